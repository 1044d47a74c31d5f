"""The exceptions the core raises. Only the CLI turns them into a message and an exit code.

Every message is one sentence meant for the person running the tool, and never holds the
imp_secret or an access token.
"""


class PaycoBatchError(Exception):
    """Base class of every expected problem; `str(error)` is the message to show."""


class InputError(PaycoBatchError):
    """The input file cannot be used: missing, unreadable, empty, undecodable, no columns."""


class InputChangedError(InputError):
    """The input file is no longer the one the run loaded: the reports cannot be written."""

    def __init__(self, path: object) -> None:
        super().__init__(
            f"{path} changed since it was loaded (its SHA-256 differs): the reports are built "
            "from the file as it was when the run started; put that file back."
        )


class StrictValidationError(PaycoBatchError):
    """`--strict` was given and some rows are invalid, so nothing is sent."""


class OutputFolderError(PaycoBatchError):
    """The output folder cannot be used (not empty, or not writable)."""


class ConfigError(PaycoBatchError):
    """The options do not make a runnable job (no target, no credentials, a bad URL...)."""


class ConfirmationRequired(PaycoBatchError):
    """Real orders would change, but there is nobody to confirm and `--yes` was not given."""


class SandboxStartError(PaycoBatchError):
    """The embedded sandbox could not start (no free port, a port already taken...)."""


class AuthenticationError(PaycoBatchError):
    """iamport refused the credentials; the run cannot go on."""


class TokenUnavailableError(PaycoBatchError):
    """No access token could be obtained for a reason other than bad credentials.

    `kind` is the error kind (timeout, network, server_error, rate_limited) a row that needed
    the token is reported with; `http_status` is getToken's answer, if there was one.
    """

    def __init__(self, message: str, *, kind: str, http_status: int | None = None) -> None:
        super().__init__(f"could not get an access token: {message}")
        self.kind = kind
        self.http_status = http_status
