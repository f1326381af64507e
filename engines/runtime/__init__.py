"""What every backend and runner shares: the engine contract, devices and dtypes, memory sizing, file writing."""
