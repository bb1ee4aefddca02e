"""Dataset statistics, figures and reports."""
