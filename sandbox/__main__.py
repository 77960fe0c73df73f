"""`python -m sandbox serve|seed|fault|clock|events|connect`: the sandbox CLI.

Every command but `connect` works without the service's settings.
"""

from sandbox.cli import sandbox_cli

if __name__ == "__main__":
    sandbox_cli()
