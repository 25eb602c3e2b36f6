// Package cpu owns the x86_64 CPU state of a thread as cryo stores it: the
// general registers and XSAVE area that ptrace hands out, their conversion
// to and from CRIU's thread_info_x86, the CPU as cpuinfo.img records it
// (CPUID feature words, XSAVE components), and the decision whether a
// process can run on this CPU: the instruction sets user space dispatches
// on and the register state its threads have in use.
package cpu
