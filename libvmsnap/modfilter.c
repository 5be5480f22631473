/* Backend disk filters (issue 17 item 4: a command loads only the backends
 * its disks need).
 *
 * A module may declare, with VMSNAP_BACKEND_DISK_FILTER (backend.h), which
 * disk types (and, for network disks, which protocols) it can take at all
 * and its refusal reason for the rest.  The declaration is a string in the
 * module's ELF section ".vmsnap_filter"; the loader reads it from the file
 * on disk without loading the module, and the planner records a refused
 * disk's verdict from it.  The module's probe tests the same string first
 * (vmsnap_disk_filter_refuses), so both verdicts are one.
 *
 * Format, version 1 (text, at most VMSNAP_FILTER_MAX bytes, every line
 * ending in '\n', no other control character, UTF-8):
 *
 *   vmsnap-filter 1
 *   types=block                     comma-separated libvirt disk types
 *   protocols=                      network protocols; empty: any
 *   refuse=not a block device, ...  the reason, non-empty
 *
 * Each key exactly once (protocols may be left out), in any order, nothing
 * else.  Anything else, another version included, is "no filter": the
 * module is loaded and probed as a module without one.
 *
 * The module file is hostile input like any other: it is read with
 * bounded reads (ELF header, section headers, the section-name table and
 * the one section), and anything inconsistent (offsets outside the file,
 * absurd counts or sizes, unterminated names, two such sections, another
 * ELF class or byte order than this process's) gives "no filter". */
#include <config.h>

#include <elf.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define FILTER_MAGIC "vmsnap-filter 1\n"
/* The ELF section as VMSNAP_BACKEND_DISK_FILTER names it. */
#define FILTER_SECTION ".vmsnap_filter"
/* Bounds against hostile module files: a module has a few dozen sections
 * and a section-name table of a few hundred bytes. */
#define MAX_SECTIONS 4096u
#define MAX_SHSTRTAB (64u * 1024)

static const char *const type_names[] = {
  [VMSNAP_DISK_TYPE_FILE] = "file",
  [VMSNAP_DISK_TYPE_BLOCK] = "block",
  [VMSNAP_DISK_TYPE_NETWORK] = "network",
  [VMSNAP_DISK_TYPE_VOLUME] = "volume",
  [VMSNAP_DISK_TYPE_DIR] = "dir",
  [VMSNAP_DISK_TYPE_NVME] = "nvme",
  [VMSNAP_DISK_TYPE_VHOSTUSER] = "vhostuser",
  [VMSNAP_DISK_TYPE_VHOSTVDPA] = "vhostvdpa",
};

/* Is the comma-separated LIST (LEN bytes) well-formed, and does it hold
 * WANT (NULL: only check it)?  Tokens are non-empty, made of a-z, 0-9 and
 * "+.-"; with TYPES, each one a disk type name. */
static gboolean
list_scan (const char *list, size_t len, gboolean types, const char *want,
           gboolean *found)
{
  size_t i = 0;

  *found = FALSE;
  if (len == 0)
    return FALSE;
  while (i <= len) {
    size_t j = i;
    while (j < len && list[j] != ',')
      j++;
    if (j == i)
      return FALSE;
    for (size_t k = i; k < j; k++)
      if (!g_ascii_islower (list[k]) && !g_ascii_isdigit (list[k])
          && list[k] != '+' && list[k] != '.' && list[k] != '-')
        return FALSE;
    if (types) {
      gboolean known = FALSE;
      for (size_t t = 0; t < G_N_ELEMENTS (type_names); t++)
        if (type_names[t] && strlen (type_names[t]) == j - i
            && memcmp (type_names[t], list + i, j - i) == 0)
          known = TRUE;
      if (!known)
        return FALSE;
    }
    if (want && strlen (want) == j - i && memcmp (want, list + i, j - i) == 0)
      *found = TRUE;
    i = j + 1;
  }
  return TRUE;
}

/* Parse FILTER; FALSE when it is not a well-formed version 1 filter.
 * With DISK, *REFUSED says whether it refuses DISK; *REASON and *REASON_LEN
 * locate the refusal reason inside FILTER. */
static gboolean
filter_eval (const char *filter, const vmsnap_disk *disk, gboolean *refused,
             const char **reason, size_t *reason_len)
{
  size_t len, pos;
  const char *types = NULL, *protocols = NULL, *refuse = NULL;
  size_t types_len = 0, protocols_len = 0, refuse_len = 0;
  gboolean type_ok, protocol_ok, dummy;
  const char *tname = NULL, *proto = NULL;

  if (filter == NULL)
    return FALSE;
  len = strnlen (filter, VMSNAP_FILTER_MAX + 1);
  if (len > VMSNAP_FILTER_MAX || len == 0 || filter[len - 1] != '\n'
      || !g_utf8_validate (filter, (gssize) len, NULL))
    return FALSE;
  for (size_t i = 0; i < len; i++)
    if (((unsigned char) filter[i] < 0x20 && filter[i] != '\n')
        || filter[i] == 0x7f)
      return FALSE;
  if (strncmp (filter, FILTER_MAGIC, strlen (FILTER_MAGIC)) != 0)
    return FALSE;

  for (pos = strlen (FILTER_MAGIC); pos < len;) {
    const char *line = filter + pos;
    const char *nl = memchr (line, '\n', len - pos);
    const char *eq = memchr (line, '=', (size_t) (nl - line));
    const char **slot;
    size_t *slot_len;

    if (eq == NULL)
      return FALSE;
    if (eq - line == 5 && memcmp (line, "types", 5) == 0)
      slot = &types, slot_len = &types_len;
    else if (eq - line == 9 && memcmp (line, "protocols", 9) == 0)
      slot = &protocols, slot_len = &protocols_len;
    else if (eq - line == 6 && memcmp (line, "refuse", 6) == 0)
      slot = &refuse, slot_len = &refuse_len;
    else
      return FALSE;
    if (*slot != NULL)
      return FALSE;
    *slot = eq + 1;
    *slot_len = (size_t) (nl - (eq + 1));
    pos = (size_t) (nl - filter) + 1;
  }
  if (types == NULL || refuse == NULL || refuse_len == 0
      || !list_scan (types, types_len, TRUE, NULL, &dummy)
      || (protocols_len > 0
          && !list_scan (protocols, protocols_len, FALSE, NULL, &dummy)))
    return FALSE;
  if (disk == NULL)
    return TRUE;

  if ((size_t) disk->type < G_N_ELEMENTS (type_names))
    tname = type_names[disk->type];
  type_ok = tname != NULL && list_scan (types, types_len, TRUE, tname, &dummy)
            && dummy;
  protocol_ok = TRUE;
  if (type_ok && disk->type == VMSNAP_DISK_TYPE_NETWORK && protocols_len > 0) {
    proto = disk->protocol;
    protocol_ok = proto != NULL
                  && list_scan (protocols, protocols_len, FALSE, proto, &dummy)
                  && dummy;
  }
  *refused = !(type_ok && protocol_ok);
  *reason = refuse;
  *reason_len = refuse_len;
  return TRUE;
}

gboolean
vmsnap_disk_filter_valid (const char *filter)
{
  return filter_eval (filter, NULL, NULL, NULL, NULL);
}

char *
vmsnap_disk_filter_refuses (const char *filter, const vmsnap_disk *disk)
{
  gboolean refused = FALSE;
  const char *reason = NULL;
  size_t reason_len = 0;

  if (disk == NULL || !filter_eval (filter, disk, &refused, &reason, &reason_len)
      || !refused)
    return NULL;
  return g_strndup (reason, reason_len);
}

/* --------------------------------------------------------- ELF reading */

typedef ElfW (Ehdr) ehdr_t;
typedef ElfW (Shdr) shdr_t;

#if __ELF_NATIVE_CLASS == 64
# define NATIVE_CLASS ELFCLASS64
#else
# define NATIVE_CLASS ELFCLASS32
#endif
#if __BYTE_ORDER == __LITTLE_ENDIAN
# define NATIVE_DATA ELFDATA2LSB
#else
# define NATIVE_DATA ELFDATA2MSB
#endif

/* Read exactly LEN bytes at OFF of a file of SIZE bytes. */
static gboolean
read_exact (int fd, guint64 size, void *buf, size_t len, guint64 off)
{
  size_t done = 0;

  if (off > size || len > size - off)
    return FALSE;
  while (done < len) {
    ssize_t n = pread (fd, (char *) buf + done, len - done, (off_t) (off + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return FALSE;
    done += (size_t) n;
  }
  return TRUE;
}

/* Is [OFF, OFF+LEN) inside a file of SIZE bytes? */
static gboolean
inside (guint64 off, guint64 len, guint64 size)
{
  return off <= size && len <= size - off;
}

char *
vmsnap_module_filter_fd (int fd)
{
  struct stat st;
  ehdr_t eh;
  g_autofree shdr_t *sh = NULL;
  g_autofree char *names = NULL, *data = NULL;
  const shdr_t *strtab, *found = NULL;
  guint64 size;
  size_t n, dlen;

  if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode) || st.st_size < 0)
    return NULL;
  size = (guint64) st.st_size;
  if (!read_exact (fd, size, &eh, sizeof eh, 0))
    return NULL;
  if (memcmp (eh.e_ident, ELFMAG, SELFMAG) != 0
      || eh.e_ident[EI_CLASS] != NATIVE_CLASS
      || eh.e_ident[EI_DATA] != NATIVE_DATA
      || eh.e_ident[EI_VERSION] != EV_CURRENT
      || eh.e_type != ET_DYN || eh.e_version != EV_CURRENT
      || eh.e_ehsize != sizeof eh || eh.e_shentsize != sizeof (shdr_t))
    return NULL;
  /* e_shnum 0 (more than SHN_LORESERVE sections, the count in section 0)
   * and SHN_XINDEX are not what a module looks like. */
  n = eh.e_shnum;
  if (n == 0 || n > MAX_SECTIONS || eh.e_shstrndx == SHN_UNDEF
      || eh.e_shstrndx >= n || !inside (eh.e_shoff, (guint64) n * sizeof (shdr_t), size))
    return NULL;
  sh = g_new (shdr_t, n);
  if (!read_exact (fd, size, sh, n * sizeof (shdr_t), eh.e_shoff))
    return NULL;

  strtab = &sh[eh.e_shstrndx];
  if (strtab->sh_type != SHT_STRTAB || strtab->sh_size == 0
      || strtab->sh_size > MAX_SHSTRTAB
      || !inside (strtab->sh_offset, strtab->sh_size, size))
    return NULL;
  names = g_malloc (strtab->sh_size);
  if (!read_exact (fd, size, names, strtab->sh_size, strtab->sh_offset))
    return NULL;

  for (size_t i = 0; i < n; i++) {
    const char *name;
    if (sh[i].sh_name >= strtab->sh_size)
      return NULL;
    name = names + sh[i].sh_name;
    if (memchr (name, '\0', strtab->sh_size - sh[i].sh_name) == NULL)
      return NULL;
    if (strcmp (name, FILTER_SECTION) != 0)
      continue;
    if (found != NULL)
      return NULL;            /* two: which one would the module test? */
    found = &sh[i];
  }
  if (found == NULL || found->sh_type != SHT_PROGBITS || found->sh_size == 0
      || found->sh_size > VMSNAP_FILTER_MAX + 1
      || !inside (found->sh_offset, found->sh_size, size))
    return NULL;
  dlen = (size_t) found->sh_size;
  data = g_malloc (dlen);
  if (!read_exact (fd, size, data, dlen, found->sh_offset))
    return NULL;
  /* One string, its terminating NUL the section's last byte: two filters
   * linked into one module are refused, not concatenated. */
  if (data[dlen - 1] != '\0' || strlen (data) != dlen - 1
      || !vmsnap_disk_filter_valid (data))
    return NULL;
  return g_steal_pointer (&data);
}

char *
vmsnap_module_filter_file (const char *path)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  char *filter;

  if (fd < 0)
    return NULL;
  filter = vmsnap_module_filter_fd (fd);
  close (fd);
  return filter;
}
