"""The control plane: FastAPI app for meetings and joins, and its stores."""
