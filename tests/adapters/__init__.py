"""Adapter tests: stock framework and aaflow side by side on the same inputs."""
