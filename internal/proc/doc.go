// Package proc parses the text files the kernel publishes under /proc/PID.
//
// Parsers take the file's bytes and return an error on anything they do not
// understand; the Read* helpers fetch the bytes of a live process and sit on
// top of them.
package proc
