"""`python -m llmcorr …`: the `llmcorr` command, for when only the interpreter is at hand (the dashboard starts runs
this way)."""

from .cli import main

if __name__ == "__main__":
    main()
