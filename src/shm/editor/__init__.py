"""The interactive editor: editing sessions, their store, and the FastAPI app."""
