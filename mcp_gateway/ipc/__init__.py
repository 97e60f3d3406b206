"""The tiny typed protocol between the supervisor and its workers."""
