"""What people read: terminal and Markdown tables, the figure legend, the HTML report, the
compare and saturate views.

Rule: imports harness.analysis and below; rich and matplotlib live here and nowhere else."""
