"""Side-by-side benchmark of router against peer task queues on one throwaway Redis (issue #4)."""
