"""The `darktower` command line and the process model that runs workers and the control plane."""
