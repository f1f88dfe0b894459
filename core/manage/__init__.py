"""The manager's helpers, each one concern: the projects of a repository root, browsing a
backup's tree, and taking a project's locks."""
