// vdsosym.h: find a function in the vDSO the way the dynamic loader does,
// so that a subject can call it through a pointer, as libc does with the
// pointers it caches at start-up.
#ifndef VDSOSYM_H
#define VDSOSYM_H

#include <elf.h>
#include <stdint.h>
#include <string.h>
#include <sys/auxv.h>

// vdso_sym returns the address of symbol want in the vDSO, or NULL.
static void *vdso_sym(const char *want) {
	uintptr_t base = getauxval(AT_SYSINFO_EHDR);
	if (!base)
		return NULL;
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
	if (!dyn)
		return NULL;
	const char *strtab = NULL;
	Elf64_Sym *symtab = NULL;
	uint32_t *hash = NULL;
	for (; dyn->d_tag != DT_NULL; dyn++) {
		if (dyn->d_tag == DT_STRTAB)
			strtab = (const char *)(load + dyn->d_un.d_ptr);
		if (dyn->d_tag == DT_SYMTAB)
			symtab = (Elf64_Sym *)(load + dyn->d_un.d_ptr);
		if (dyn->d_tag == DT_HASH)
			hash = (uint32_t *)(load + dyn->d_un.d_ptr);
	}
	if (!strtab || !symtab || !hash)
		return NULL;
	for (uint32_t i = 0; i < hash[1]; i++)
		if (symtab[i].st_shndx != SHN_UNDEF && strcmp(strtab + symtab[i].st_name, want) == 0)
			return (void *)(load + symtab[i].st_value);
	return NULL;
}

#endif
