// Package testkit holds the helpers that the tests of several packages
// share: polling until a condition holds (WaitFor, and WaitParked for
// idle connections that hold no goroutine), reading a
// text/event-stream (SSEReader, ReadSSE), dialing a WebSocket (DialWS) and
// building the project's binaries (Build, ModuleRoot). It is imported
// only by _test.go files; production code must not depend on it.
package testkit
