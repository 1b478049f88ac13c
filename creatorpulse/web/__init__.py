"""What the worker serves over HTTP: pages for the CLI, the dashboard and monitoring."""
