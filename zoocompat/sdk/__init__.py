"""SDKs and devices: QNN releases in isolated environments, adb devices, SNPE I/O."""
