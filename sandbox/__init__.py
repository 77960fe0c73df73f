"""Local, faithful stand-ins for the Salesforce and Constant Contact APIs (demo, tests, trials)."""
