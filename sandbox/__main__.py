"""`python -m sandbox serve|seed|fault|clock`: the sandbox CLI without the service's settings."""

from sandbox.cli import sandbox_cli

if __name__ == "__main__":
    sandbox_cli()
