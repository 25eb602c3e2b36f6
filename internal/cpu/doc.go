// Package cpu owns the x86_64 CPU state of a thread as cryo stores it: the
// general registers and XSAVE area that ptrace hands out, their conversion
// to and from CRIU's thread_info_x86, and the features (XCR0 components)
// a restored process needs the CPU to have.
package cpu
