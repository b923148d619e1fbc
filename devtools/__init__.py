"""Development and test tools only: never imported by the control plane's production code."""
