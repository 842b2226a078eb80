"""What every Dark Tower process shares: configuration, errors, logging, join tokens, certificates."""
