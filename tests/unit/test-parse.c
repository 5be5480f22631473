/* Domain XML parsing through the public API: malformed and hostile input
 * gives a clear INVALID_INPUT error naming the file (and line), never a
 * crash; a well-formed domain with unknown elements parses. */
#include <config.h>

#include <string.h>
#include <glib/gstdio.h>

#include <vmsnap/vmsnap.h>

static vmsnap_ctx *ctx;
static char *tmpdir;

static vmsnap_domain *
open_text (const char *xml, gssize len, GError **err)
{
  g_autofree char *path = g_build_filename (tmpdir, "d.xml", NULL);

  g_assert_true (g_file_set_contents (path, xml, len, NULL));
  return vmsnap_domain_open (ctx, path, NULL, err);
}

static void
expect_invalid (const char *xml, gssize len, const char *needle)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (vmsnap_domain) dom = open_text (xml, len, &err);

  g_assert_null (dom);
  g_assert_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT);
  g_assert_cmpint (vmsnap_exit_code (err), ==, 3);
  g_assert_nonnull (strstr (err->message, "d.xml"));
  if (strstr (err->message, needle) == NULL)
    g_error ("message '%s' lacks '%s'", err->message, needle);
}

static void
test_truncated (void)
{
  expect_invalid ("<domain><name>x</name>\n<devices>\n<disk type='file'", -1, "line 3");
}

static void
test_not_domain (void)
{
  expect_invalid ("<network><name>x</name></network>", -1, "expected <domain>");
}

static void
test_nul (void)
{
  static const char xml[] = "<domain><name>x\0y</name></domain>";
  expect_invalid (xml, sizeof xml - 1, "malformed XML");
}

static void
test_no_name (void)
{
  expect_invalid ("<domain><devices/></domain>", -1, "no <name>");
}

static void
test_no_target (void)
{
  expect_invalid ("<domain><name>x</name><devices><disk type='file'>"
                  "<source file='/nonexistent'/></disk></devices></domain>",
                  -1, "without <target");
}

static void
test_duplicate_target (void)
{
  expect_invalid ("<domain><name>x</name><devices>"
                  "<disk><target dev='vda'/></disk><disk><target dev='vda'/></disk>"
                  "</devices></domain>", -1, "two disks with target 'vda'");
}

static void
test_entities_not_expanded (void)
{
  /* An external entity must not be fetched or substituted. */
  g_autoptr (GError) err = NULL;
  g_autoptr (vmsnap_domain) dom = open_text (
    "<?xml version='1.0'?><!DOCTYPE d [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>"
    "<domain><name>&e;</name></domain>", -1, &err);

  if (dom)
    g_assert_null (strstr (vmsnap_domain_name (dom), "root:"));
}

static void
test_unknown_elements (void)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (vmsnap_domain) dom = open_text (
    "<domain type='kvm' xmlns:x='urn:x'><name>ok</name><x:meta><y/></x:meta>"
    "<uuid>12345678-1234-1234-1234-123456789abc</uuid><futurething a='1'/>"
    "<devices><disk type='network' device='disk'><driver type='raw'/>"
    "<source protocol='nbd' name='exp'><host name='127.0.0.1' port='10809'/>"
    "<futurechild/></source><target dev='vda'/><unknown/></disk></devices></domain>",
    -1, &err);

  g_assert_no_error (err);
  g_assert_cmpstr (vmsnap_domain_name (dom), ==, "ok");
  g_assert_cmpstr (vmsnap_domain_uuid (dom), ==, "12345678-1234-1234-1234-123456789abc");
}

static void
test_missing_file (void)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (vmsnap_domain) dom = vmsnap_domain_open (ctx, "/nonexistent/d.xml", NULL, &err);

  g_assert_null (dom);
  g_assert_error (err, VMSNAP_ERROR, VMSNAP_ERR_INVALID_INPUT);
  g_assert_nonnull (strstr (err->message, "No such file"));
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) err = NULL;
  int rc;

  g_test_init (&argc, &argv, NULL);
  tmpdir = g_dir_make_tmp ("vmsnap-parse-XXXXXX", &err);
  g_assert_no_error (err);
  ctx = vmsnap_ctx_new (&err);
  g_assert_no_error (err);
  g_test_add_func ("/parse/truncated", test_truncated);
  g_test_add_func ("/parse/not-domain", test_not_domain);
  g_test_add_func ("/parse/nul-byte", test_nul);
  g_test_add_func ("/parse/no-name", test_no_name);
  g_test_add_func ("/parse/no-target", test_no_target);
  g_test_add_func ("/parse/duplicate-target", test_duplicate_target);
  g_test_add_func ("/parse/entities", test_entities_not_expanded);
  g_test_add_func ("/parse/unknown-elements", test_unknown_elements);
  g_test_add_func ("/parse/missing-file", test_missing_file);
  rc = g_test_run ();
  vmsnap_ctx_free (ctx);
  {
    g_autofree char *p = g_build_filename (tmpdir, "d.xml", NULL);
    g_unlink (p);
    g_rmdir (tmpdir);
    g_free (tmpdir);
  }
  return rc;
}
