//! The whole import on files in memory: exit codes, the report's shape, stable output.
