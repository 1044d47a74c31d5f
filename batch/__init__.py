"""payco-batch: change the order status of PAYCO payments in bulk through iamport."""

__version__ = "0.1.0"
