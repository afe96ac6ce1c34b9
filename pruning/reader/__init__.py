"""Reading an untrusted `.pt2` file into an ExportedProgram, without an unpickler."""
