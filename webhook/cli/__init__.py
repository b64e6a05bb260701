"""Layer 9, the top: the `ep-webhook` command line (`serve`, `mutate`, `audit`, ...) and reading manifest streams."""
