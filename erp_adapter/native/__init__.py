"""What native ERP adapters share: the `NativeErp` interface, the poller and the write-back."""
