"""Training steps: thin layers over TRL trainers and PEFT adapters."""
