/* Backend disk filters (libvmsnap/modfilter.c): the filter text's rules,
 * reading it from module files without loading them (the built modules,
 * stripped copies), and hostile module files: truncated, with every
 * header field the reader trusts made inconsistent, random bit flips and
 * garbage all give "no filter" and never a crash (the sanitizer build
 * watches the reads). */
#include <config.h>

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "../../libvmsnap/internal.h"

typedef ElfW (Ehdr) ehdr_t;
typedef ElfW (Shdr) shdr_t;

static char *tmpdir;
static const char *modules;   /* $VMSNAP_TEST_MODULES */

#define FILTERED_TEXT \
  "vmsnap-filter 1\ntypes=file,network\nprotocols=nbd,gluster\n" \
  "refuse=test: neither a file nor an nbd or gluster disk\n"

/* ------------------------------------------------------ the filter text */

static vmsnap_disk
disk (vmsnap_disk_type type, const char *protocol)
{
  vmsnap_disk d = { .struct_size = sizeof d, .target = "vda", .type = type,
                    .protocol = protocol };
  return d;
}

static void
expect_refusal (const char *filter, vmsnap_disk d, const char *want)
{
  g_autofree char *got = vmsnap_disk_filter_refuses (filter, &d);

  g_assert_cmpstr (got, ==, want);
}

static void
test_semantics (void)
{
  const char *lvm = "vmsnap-filter 1\ntypes=block\nprotocols=\n"
                    "refuse=not a block device, so not an LVM logical volume\n";
  const char *rbd = "vmsnap-filter 1\ntypes=network\nprotocols=rbd\n"
                    "refuse=not an rbd network disk\n";
  const char *lvm_why = "not a block device, so not an LVM logical volume";

  g_assert_true (vmsnap_disk_filter_valid (lvm));
  g_assert_true (vmsnap_disk_filter_valid (rbd));
  g_assert_true (vmsnap_disk_filter_valid (FILTERED_TEXT));
  expect_refusal (lvm, disk (VMSNAP_DISK_TYPE_BLOCK, NULL), NULL);
  for (int t = VMSNAP_DISK_TYPE_UNKNOWN; t <= VMSNAP_DISK_TYPE_VHOSTVDPA; t++)
    if (t != VMSNAP_DISK_TYPE_BLOCK)
      expect_refusal (lvm, disk (t, NULL), lvm_why);
  expect_refusal (lvm, disk (99, NULL), lvm_why);
  expect_refusal (rbd, disk (VMSNAP_DISK_TYPE_NETWORK, "rbd"), NULL);
  expect_refusal (rbd, disk (VMSNAP_DISK_TYPE_NETWORK, "nbd"), "not an rbd network disk");
  expect_refusal (rbd, disk (VMSNAP_DISK_TYPE_NETWORK, "rbdx"), "not an rbd network disk");
  expect_refusal (rbd, disk (VMSNAP_DISK_TYPE_NETWORK, "rb"), "not an rbd network disk");
  expect_refusal (rbd, disk (VMSNAP_DISK_TYPE_NETWORK, NULL), "not an rbd network disk");
  expect_refusal (rbd, disk (VMSNAP_DISK_TYPE_FILE, "rbd"), "not an rbd network disk");
  /* Several types and protocols; protocols apply to network disks only. */
  expect_refusal (FILTERED_TEXT, disk (VMSNAP_DISK_TYPE_FILE, NULL), NULL);
  expect_refusal (FILTERED_TEXT, disk (VMSNAP_DISK_TYPE_NETWORK, "gluster"), NULL);
  expect_refusal (FILTERED_TEXT, disk (VMSNAP_DISK_TYPE_NETWORK, "nbd"), NULL);
  expect_refusal (FILTERED_TEXT, disk (VMSNAP_DISK_TYPE_NETWORK, "iscsi"),
                  "test: neither a file nor an nbd or gluster disk");
  expect_refusal (FILTERED_TEXT, disk (VMSNAP_DISK_TYPE_BLOCK, NULL),
                  "test: neither a file nor an nbd or gluster disk");
  /* Any protocol; the keys in another order; protocols left out. */
  expect_refusal ("vmsnap-filter 1\nrefuse=no\ntypes=network,dir\n",
                  disk (VMSNAP_DISK_TYPE_NETWORK, NULL), NULL);
  expect_refusal ("vmsnap-filter 1\nrefuse=no = never\ntypes=dir\nprotocols=\n",
                  disk (VMSNAP_DISK_TYPE_VOLUME, NULL), "no = never");
  /* The macro makes what the reader reads. */
  {
    VMSNAP_BACKEND_DISK_FILTER (f, "vhostuser,nvme", "", "test reason");
    g_assert_cmpstr (f, ==, "vmsnap-filter 1\ntypes=vhostuser,nvme\n"
                     "protocols=\nrefuse=test reason\n");
    g_assert_true (vmsnap_disk_filter_valid (f));
  }
}

/* Malformed: filters nothing, for the core and the module alike. */
static void
test_malformed (void)
{
  g_autofree char *longest = NULL, *too_long = NULL;
  g_autofree char *fill = NULL, *fill1 = NULL;
  const char *bad[] = {
    "",
    "vmsnap-filter 1\n",
    "vmsnap-filter 2\ntypes=block\nrefuse=x\n",
    "vmsnap-filter 1 \ntypes=block\nrefuse=x\n",
    "Vmsnap-filter 1\ntypes=block\nrefuse=x\n",
    "vmsnap-filter 1\ntypes=block\nrefuse=x",          /* no final newline */
    "vmsnap-filter 1\ntypes=block\n",                    /* no reason */
    "vmsnap-filter 1\ntypes=block\nrefuse=\n",           /* empty reason */
    "vmsnap-filter 1\nrefuse=x\n",                       /* no types */
    "vmsnap-filter 1\ntypes=\nrefuse=x\n",
    "vmsnap-filter 1\ntypes=block,\nrefuse=x\n",
    "vmsnap-filter 1\ntypes=,block\nrefuse=x\n",
    "vmsnap-filter 1\ntypes=block,,file\nrefuse=x\n",
    "vmsnap-filter 1\ntypes=Block\nrefuse=x\n",
    "vmsnap-filter 1\ntypes=floppy\nrefuse=x\n",
    "vmsnap-filter 1\ntypes=block\ntypes=file\nrefuse=x\n",
    "vmsnap-filter 1\ntypes=block\nrefuse=x\nrefuse=y\n",
    "vmsnap-filter 1\ntypes=network\nprotocols=r b d\nrefuse=x\n",
    "vmsnap-filter 1\ntypes=network\nprotocols=rbd,\nrefuse=x\n",
    "vmsnap-filter 1\ntypes=network\nprotocols=RBD\nrefuse=x\n",
    "vmsnap-filter 1\ntypes=block\nrefuse=x\nsize=3\n",  /* unknown key */
    "vmsnap-filter 1\ntypes=block\nrefuse=x\n\n",        /* empty line */
    "vmsnap-filter 1\ntypes=block\nrefuse\n",
    "vmsnap-filter 1\ntypes=block\nrefuse=a\tb\n",       /* control char */
    "vmsnap-filter 1\ntypes=block\nrefuse=a\rb\n",
    "vmsnap-filter 1\ntypes=block\nrefuse=a\x7f\n",
    "vmsnap-filter 1\ntypes=block\nrefuse=\xff\xfe\n",   /* not UTF-8 */
    "vmsnap-filter 1\r\ntypes=block\nrefuse=x\n",
  };
  vmsnap_disk d = disk (VMSNAP_DISK_TYPE_FILE, NULL);
  const char *head = "vmsnap-filter 1\ntypes=block\nrefuse=";

  for (size_t i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autofree char *why = vmsnap_disk_filter_refuses (bad[i], &d);
    if (vmsnap_disk_filter_valid (bad[i]) || why != NULL)
      g_error ("malformed filter %zu accepted", i);
  }
  g_assert_null (vmsnap_disk_filter_refuses (NULL, &d));
  g_assert_false (vmsnap_disk_filter_valid (NULL));
  /* UTF-8 in the reason is fine. */
  g_assert_true (vmsnap_disk_filter_valid ("vmsnap-filter 1\ntypes=block\n"
                                           "refuse=pas un p\xc3\xa9riph\xc3\xa9rique\n"));
  /* VMSNAP_FILTER_MAX bytes at most. */
  fill = g_strnfill (VMSNAP_FILTER_MAX - strlen (head) - 1, 'x');
  fill1 = g_strnfill (VMSNAP_FILTER_MAX - strlen (head), 'x');
  longest = g_strdup_printf ("%s%s\n", head, fill);
  too_long = g_strdup_printf ("%s%s\n", head, fill1);
  g_assert_cmpuint (strlen (longest), ==, VMSNAP_FILTER_MAX);
  g_assert_true (vmsnap_disk_filter_valid (longest));
  g_assert_false (vmsnap_disk_filter_valid (too_long));
}

/* --------------------------------------------------------- module files */

static char *
module_file (const char *dir, const char *name)
{
  return g_strdup_printf ("%s/.libs/%s.so", dir, name);
}

static void
test_test_modules (void)
{
  g_autofree char *filtered = module_file (modules, "filtered");
  g_autofree char *two = module_file (modules, "twofilters");
  g_autofree char *good = module_file (modules, "good");
  g_autofree char *f = vmsnap_module_filter_file (filtered);
  g_autofree char *t = vmsnap_module_filter_file (two);
  g_autofree char *g = vmsnap_module_filter_file (good);

  g_assert_cmpstr (f, ==, FILTERED_TEXT);
  g_assert_null (t);   /* two strings in the section */
  g_assert_null (g);   /* none declared */
}

/* The backends built here: lvm and rbd declare theirs, the qcow2 ones
 * none (their refusals name the disk's type). */
static void
test_shipped (void)
{
  const char *top = g_getenv ("abs_top_builddir");
  static const struct {
    const char *name, *filter;
  } want[] = {
    { "lvm", "vmsnap-filter 1\ntypes=block\nprotocols=\n"
             "refuse=not a block device, so not an LVM logical volume\n" },
    { "rbd", "vmsnap-filter 1\ntypes=network\nprotocols=rbd\n"
             "refuse=not an rbd network disk\n" },
    { "qcow2-external", NULL },
    { "qcow2-internal", NULL },
  };
  guint seen = 0;

  g_assert_nonnull (top);
  for (size_t i = 0; i < G_N_ELEMENTS (want); i++) {
    g_autofree char *dir = g_strdup_printf ("%s/backends/%s", top, want[i].name);
    g_autofree char *so = module_file (dir, want[i].name);
    g_autofree char *got = NULL;
    if (!g_file_test (so, G_FILE_TEST_IS_REGULAR)) {
      g_test_message ("%s not built", want[i].name);
      continue;
    }
    seen++;
    got = vmsnap_module_filter_file (so);
    g_assert_cmpstr (got, ==, want[i].filter);
  }
  g_assert_cmpuint (seen, >=, 2);
}

static char *
copy_to_tmp (const char *src, const char *name, gsize *len_out)
{
  g_autofree char *data = NULL;
  gsize len;
  char *dst = g_build_filename (tmpdir, name, NULL);

  g_assert_true (g_file_get_contents (src, &data, &len, NULL));
  g_assert_true (g_file_set_contents (dst, data, (gssize) len, NULL));
  if (len_out)
    *len_out = len;
  return dst;
}

/* What Debian's dh_strip does (and plain --strip-unneeded) keeps the
 * section: it is allocated data, which strip never removes. */
static void
test_stripped (void)
{
  g_autofree char *strip = g_find_program_in_path ("strip");
  g_autofree char *src = module_file (modules, "filtered");
  const char *modes[][4] = {
    { "--strip-unneeded", NULL },
    { "--remove-section=.comment", "--remove-section=.note", "--strip-unneeded", NULL },
    { "--strip-all", NULL },
  };

  if (strip == NULL) {
    g_test_skip ("no strip(1)");
    return;
  }
  for (size_t i = 0; i < G_N_ELEMENTS (modes); i++) {
    g_autofree char *copy = copy_to_tmp (src, "stripped.so", NULL);
    g_autofree char *got = NULL;
    g_autoptr (GPtrArray) argv = g_ptr_array_new ();
    g_autoptr (GError) err = NULL;
    gint status = 0;
    struct stat a, b;

    g_ptr_array_add (argv, strip);
    for (int k = 0; modes[i][k]; k++)
      g_ptr_array_add (argv, (char *) modes[i][k]);
    g_ptr_array_add (argv, copy);
    g_ptr_array_add (argv, NULL);
    g_assert_true (g_spawn_sync (NULL, (char **) argv->pdata, NULL,
                                 G_SPAWN_DEFAULT, NULL, NULL, NULL, NULL,
                                 &status, &err));
    g_assert_no_error (err);
    g_assert_true (g_spawn_check_wait_status (status, NULL));
    /* The self-check: strip did remove something. */
    g_assert_cmpint (g_stat (src, &a), ==, 0);
    g_assert_cmpint (g_stat (copy, &b), ==, 0);
    g_assert_cmpint (b.st_size, <, a.st_size);
    got = vmsnap_module_filter_file (copy);
    g_assert_cmpstr (got, ==, FILTERED_TEXT);
    g_unlink (copy);
  }
}

/* ------------------------------------------------------ hostile files */

/* Write LEN bytes of DATA as the module file hostile.so (plain writes: no
 * fsync, thousands of files are read) and read its filter. */
static char *
read_bytes (guint8 *data, gsize len)
{
  g_autofree char *path = g_build_filename (tmpdir, "hostile.so", NULL);
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  gsize done = 0;

  g_assert_cmpint (fd, >=, 0);
  while (done < len) {
    ssize_t n = write (fd, data + done, len - done);
    g_assert_cmpint (n, >, 0);
    done += (gsize) n;
  }
  g_assert_cmpint (close (fd), ==, 0);
  return vmsnap_module_filter_file (path);
}

/* The bytes of the filtered test module, its ELF header and its section
 * headers (pointers into the bytes) and its filter section's index. */
typedef struct {
  guint8 *data;
  gsize len;
  ehdr_t *eh;
  shdr_t *sh;
  size_t filter_index;
} image;

static void
image_load (image *im)
{
  g_autofree char *src = module_file (modules, "filtered");
  const char *names;

  g_assert_true (g_file_get_contents (src, (char **) &im->data, &im->len, NULL));
  g_assert_cmpuint (im->len, >, sizeof (ehdr_t));
  im->eh = (ehdr_t *) im->data;
  g_assert_cmpuint (im->eh->e_shoff + im->eh->e_shnum * sizeof (shdr_t), <=, im->len);
  im->sh = (shdr_t *) (im->data + im->eh->e_shoff);
  names = (const char *) im->data + im->sh[im->eh->e_shstrndx].sh_offset;
  im->filter_index = 0;
  for (size_t i = 0; i < im->eh->e_shnum; i++)
    if (strcmp (names + im->sh[i].sh_name, ".vmsnap_filter") == 0)
      im->filter_index = i;
  g_assert_cmpuint (im->filter_index, >, 0);
}

static void
image_reset (image *im, const guint8 *orig)
{
  memcpy (im->data, orig, im->len);
}

static void
test_truncated (void)
{
  image im;

  image_load (&im);
  {
    g_autofree char *whole = read_bytes (im.data, im.len);
    g_assert_cmpstr (whole, ==, FILTERED_TEXT);   /* the self-check */
  }
  /* Every length short of the whole file: the section headers are at its
   * end, so none of them is readable. */
  {
    g_autofree char *path = g_build_filename (tmpdir, "hostile.so", NULL);
    for (gsize n = im.len; n-- > 0;) {
      g_autofree char *got = NULL;
      g_assert_cmpint (truncate (path, (off_t) n), ==, 0);
      got = vmsnap_module_filter_file (path);
      if (got != NULL)
        g_error ("truncated to %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT
                 " bytes, a filter was read", n, im.len);
    }
  }
  g_free (im.data);
}

static void
test_inconsistent (void)
{
  image im;
  g_autofree guint8 *orig = NULL;
  shdr_t *strtab, *fs;
  size_t n, other;
  gsize shoff, stroff, strsize, fsoff, fssize;

  image_load (&im);
  orig = g_malloc (im.len);
  memcpy (orig, im.data, im.len);
  strtab = &im.sh[im.eh->e_shstrndx];
  fs = &im.sh[im.filter_index];
  n = im.eh->e_shnum;
  other = im.filter_index == 1 ? 2 : 1;   /* another section */

#define EXPECT_NONE(what, mutation)                                        \
  do {                                                                     \
    g_autofree char *got_ = NULL;                                          \
    image_reset (&im, orig);                                               \
    mutation;                                                              \
    got_ = read_bytes (im.data, im.len);                                   \
    if (got_ != NULL)                                                      \
      g_error ("%s: a filter was read: '%s'", what, got_);                 \
  } while (0)

  EXPECT_NONE ("bad magic", im.eh->e_ident[EI_MAG1] = 'X');
  EXPECT_NONE ("other class", im.eh->e_ident[EI_CLASS] ^= 3);
  EXPECT_NONE ("other byte order", im.eh->e_ident[EI_DATA] ^= 3);
  EXPECT_NONE ("bad ident version", im.eh->e_ident[EI_VERSION] = 2);
  EXPECT_NONE ("not a shared object", im.eh->e_type = ET_EXEC);
  EXPECT_NONE ("bad version", im.eh->e_version = 7);
  EXPECT_NONE ("bad header size", im.eh->e_ehsize = 12);
  EXPECT_NONE ("bad entry size", im.eh->e_shentsize = sizeof (shdr_t) + 1);
  EXPECT_NONE ("no sections", im.eh->e_shnum = 0);
  EXPECT_NONE ("absurd count", im.eh->e_shnum = 0xffff);
  EXPECT_NONE ("count past the end", im.eh->e_shnum = n + 1);
  EXPECT_NONE ("table past the end", im.eh->e_shoff = im.len);
  EXPECT_NONE ("table at a huge offset", im.eh->e_shoff = (ElfW (Off)) -1);
  EXPECT_NONE ("table overlapping the end", im.eh->e_shoff = im.len - sizeof (shdr_t));
  EXPECT_NONE ("no name table", im.eh->e_shstrndx = SHN_UNDEF);
  EXPECT_NONE ("name table index out of range", im.eh->e_shstrndx = n);
  EXPECT_NONE ("SHN_XINDEX", im.eh->e_shstrndx = SHN_XINDEX);
  EXPECT_NONE ("name table not a string table", strtab->sh_type = SHT_PROGBITS);
  EXPECT_NONE ("name table empty", strtab->sh_size = 0);
  EXPECT_NONE ("name table huge", strtab->sh_size = (ElfW (Xword)) -1);
  EXPECT_NONE ("name table past the end", strtab->sh_offset = im.len);
  EXPECT_NONE ("name table at a huge offset", strtab->sh_offset = (ElfW (Off)) -16);
  EXPECT_NONE ("name table overlapping the end",
               strtab->sh_offset = im.len - strtab->sh_size + 1);
  EXPECT_NONE ("name out of range", im.sh[other].sh_name = strtab->sh_size);
  EXPECT_NONE ("name far out of range", im.sh[other].sh_name = 0xffffffffu);
  EXPECT_NONE ("unterminated names",
               memset (im.data + strtab->sh_offset, 'A', strtab->sh_size));
  EXPECT_NONE ("two filter sections", im.sh[other].sh_name = fs->sh_name);
  EXPECT_NONE ("filter section of no bits", fs->sh_type = SHT_NOBITS);
  EXPECT_NONE ("filter section empty", fs->sh_size = 0);
  EXPECT_NONE ("filter section huge", fs->sh_size = (ElfW (Xword)) -1);
  EXPECT_NONE ("filter section too large", fs->sh_size = VMSNAP_FILTER_MAX + 2);
  EXPECT_NONE ("filter section past the end", fs->sh_offset = im.len);
  EXPECT_NONE ("filter section at a huge offset", fs->sh_offset = (ElfW (Off)) -8);
  EXPECT_NONE ("filter section overlapping the end",
               fs->sh_offset = im.len - fs->sh_size + 1);
  EXPECT_NONE ("filter without its NUL", im.data[fs->sh_offset + fs->sh_size - 1] = 'x');
  EXPECT_NONE ("filter one byte short", fs->sh_size -= 1);
  EXPECT_NONE ("filter of another version", im.data[fs->sh_offset + 14] = '2');
  EXPECT_NONE ("filter with a NUL inside", im.data[fs->sh_offset + 20] = '\0');
  EXPECT_NONE ("filter with an unknown type", im.data[fs->sh_offset + 22] = 'F');
#undef EXPECT_NONE

  /* Random bit flips in what the reader trusts (ELF header, section
   * headers, names, the section): no crash, and any filter read is a
   * well-formed one. */
  image_reset (&im, orig);
  /* Where those are in the unchanged file (a flip may change them). */
  shoff = im.eh->e_shoff, stroff = strtab->sh_offset, strsize = strtab->sh_size;
  fsoff = fs->sh_offset, fssize = fs->sh_size;
  for (int round = 0; round < 3000; round++) {
    g_autofree char *got = NULL;
    image_reset (&im, orig);
    for (int k = g_test_rand_int_range (1, 4); k > 0; k--) {
      gsize where;
      switch (g_test_rand_int_range (0, 4)) {
      case 0: where = (gsize) g_test_rand_int_range (0, sizeof (ehdr_t)); break;
      case 1: where = shoff + (gsize) g_test_rand_int_range (0, n * sizeof (shdr_t)); break;
      case 2: where = stroff + (gsize) g_test_rand_int_range (0, strsize); break;
      default: where = fsoff + (gsize) g_test_rand_int_range (0, fssize); break;
      }
      g_assert_cmpuint (where, <, im.len);
      im.data[where] ^= (guint8) (1u << g_test_rand_int_range (0, 8));
    }
    got = read_bytes (im.data, im.len);
    g_assert_true (got == NULL || vmsnap_disk_filter_valid (got));
  }
  g_free (im.data);
}

static void
test_garbage (void)
{
  g_autofree char *dir_got = vmsnap_module_filter_file (tmpdir);
  g_autofree char *null_got = vmsnap_module_filter_file ("/dev/null");
  g_autofree char *missing = g_build_filename (tmpdir, "missing.so", NULL);
  g_autofree char *missing_got = vmsnap_module_filter_file (missing);
  g_autofree char *fifo = g_build_filename (tmpdir, "fifo.so", NULL);
  g_autofree char *fifo_got = NULL;

  g_assert_null (dir_got);
  g_assert_null (null_got);
  g_assert_null (missing_got);
  /* A FIFO: opened without blocking, refused as not a regular file. */
  g_assert_cmpint (mkfifo (fifo, 0600), ==, 0);
  fifo_got = vmsnap_module_filter_file (fifo);
  g_assert_null (fifo_got);
  g_unlink (fifo);

  /* Random bytes, and random bytes behind a valid ELF identification. */
  for (int round = 0; round < 500; round++) {
    gsize len = (gsize) g_test_rand_int_range (0, 4096);
    g_autofree guint8 *buf = g_malloc (len + sizeof (ehdr_t));
    g_autofree char *got = NULL;
    for (gsize i = 0; i < len + sizeof (ehdr_t); i++)
      buf[i] = (guint8) g_test_rand_int_range (0, 256);
    if (round % 2) {
      ehdr_t *eh = (ehdr_t *) buf;
      memcpy (eh->e_ident, ELFMAG, SELFMAG);
      eh->e_ident[EI_CLASS] = __ELF_NATIVE_CLASS == 64 ? ELFCLASS64 : ELFCLASS32;
      eh->e_ident[EI_DATA] = G_BYTE_ORDER == G_LITTLE_ENDIAN ? ELFDATA2LSB : ELFDATA2MSB;
      eh->e_ident[EI_VERSION] = EV_CURRENT;
      eh->e_type = ET_DYN;
      eh->e_version = EV_CURRENT;
      eh->e_ehsize = sizeof (ehdr_t);
      eh->e_shentsize = sizeof (shdr_t);
      eh->e_shnum %= 64;
      eh->e_shoff %= len + sizeof (ehdr_t) + 1;
      eh->e_shstrndx %= 64;
      len += sizeof (ehdr_t);
    }
    got = read_bytes (buf, len);
    g_assert_null (got);
  }
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) err = NULL;
  int rc;

  g_test_init (&argc, &argv, NULL);
  modules = g_getenv ("VMSNAP_TEST_MODULES");
  g_assert_nonnull (modules);
  tmpdir = g_dir_make_tmp ("vmsnap-modfilter-XXXXXX", &err);
  g_assert_no_error (err);

  g_test_add_func ("/modfilter/semantics", test_semantics);
  g_test_add_func ("/modfilter/malformed", test_malformed);
  g_test_add_func ("/modfilter/test-modules", test_test_modules);
  g_test_add_func ("/modfilter/shipped-backends", test_shipped);
  g_test_add_func ("/modfilter/stripped", test_stripped);
  g_test_add_func ("/modfilter/truncated", test_truncated);
  g_test_add_func ("/modfilter/inconsistent", test_inconsistent);
  g_test_add_func ("/modfilter/garbage", test_garbage);
  rc = g_test_run ();
  {
    g_autofree char *h = g_build_filename (tmpdir, "hostile.so", NULL);
    g_unlink (h);
  }
  g_rmdir (tmpdir);
  g_free (tmpdir);
  return rc;
}
