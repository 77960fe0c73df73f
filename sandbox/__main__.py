"""`python -m sandbox serve|seed|fault|clock|events|connect`: the sandbox CLI.

Every command works without the service's settings; `connect` needs the running service's URL
and admin token.
"""

from sandbox.cli import sandbox_cli

if __name__ == "__main__":
    sandbox_cli()
