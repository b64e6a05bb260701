"""Layer 2: vLLM's command line: its flags, argv scanning and editing, the shell scripts launches hide in. Pure."""
