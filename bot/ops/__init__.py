"""Running the processes: `make run` (serve), the cluster, their supervisor, the production
profile's endpoints file, the Rasa and action-server entry points, and the action server's
process-wide services (runtime)."""
