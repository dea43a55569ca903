"""The tools: the command line, the inspector, the demo and its throwaway Redis, logging set-up."""
