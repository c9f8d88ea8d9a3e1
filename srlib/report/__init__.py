"""The benchmark's report: tables, claims, figures and HTML pages from run directories."""
