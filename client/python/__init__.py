"""The asyncio Python client: the library bots, load and chaos scripts are built on, and `darktower bot`."""
