"""Worker side: plain synchronous code, one process per in-flight call, run under the sandbox."""
