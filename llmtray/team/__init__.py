"""Team mode (DESIGN §16): one PostgreSQL for many machines — copying a history into it, and
keeping what a machine records while it can't be reached."""
