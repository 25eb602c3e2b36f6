// vdsocall: measures the cost of clock_gettime through a pointer resolved
// from the vDSO at start (as libc caches it), for the proxy benchmark.
// Every 50 ms it prints "tick N ns_per_call=X ok".
#define _GNU_SOURCE
#include <elf.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <time.h>
#include <unistd.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static void *vdso_sym(const char *want) {
	uintptr_t base = getauxval(AT_SYSINFO_EHDR);
	Elf64_Ehdr *eh = (Elf64_Ehdr *)base;
	Elf64_Phdr *ph = (Elf64_Phdr *)(base + eh->e_phoff);
	uintptr_t load = 0;
	Elf64_Dyn *dyn = NULL;
	for (int i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type == PT_LOAD && !load)
			load = base + ph[i].p_offset - ph[i].p_vaddr;
		if (ph[i].p_type == PT_DYNAMIC)
			dyn = (Elf64_Dyn *)(base + ph[i].p_offset);
	}
	const char *strtab = NULL;
	Elf64_Sym *symtab = NULL;
	uint32_t *hash = NULL;
	for (; dyn && dyn->d_tag != DT_NULL; dyn++) {
		if (dyn->d_tag == DT_STRTAB)
			strtab = (const char *)(load + dyn->d_un.d_ptr);
		if (dyn->d_tag == DT_SYMTAB)
			symtab = (Elf64_Sym *)(load + dyn->d_un.d_ptr);
		if (dyn->d_tag == DT_HASH)
			hash = (uint32_t *)(load + dyn->d_un.d_ptr);
	}
	for (uint32_t i = 0; hash && i < hash[1]; i++)
		if (symtab[i].st_shndx != SHN_UNDEF && strcmp(strtab + symtab[i].st_name, want) == 0)
			return (void *)(load + symtab[i].st_value);
	return NULL;
}

int main(void) {
	clock_gettime_fn f = vdso_sym("__vdso_clock_gettime");
	if (!f) {
		printf("FAIL no __vdso_clock_gettime\n");
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready\n");
	for (unsigned long tick = 0;; tick++) {
		enum { calls = 200000 };
		struct timespec a, b, x;
		clock_gettime(CLOCK_MONOTONIC_RAW, &a);
		for (int i = 0; i < calls; i++)
			f(CLOCK_MONOTONIC, &x);
		clock_gettime(CLOCK_MONOTONIC_RAW, &b);
		double ns = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / calls;
		printf("tick %lu ns_per_call=%.2f ok\n", tick, ns);
		struct timespec d = {0, 50 * 1000000L};
		nanosleep(&d, NULL);
	}
}
