/* rbd-snap-time: how long librbd takes to snapshot an image that another
 * client (QEMU) may hold the exclusive lock of.  Built at run time by
 * bench/pause-window.sh with cc against librbd/librados.
 *
 *   rbd-snap-time CEPH_CONF POOL/IMAGE SNAPNAME [POOL/IMAGE...]
 *
 * Prints one line (milliseconds):
 *   images=N connect_ms=C open_ms=O snap_create_ms=S snap_max_one_ms=M
 *   close_ms=X lock_owner=0|1
 * connect = rados_create + conf + rados_connect + ioctx; open = rbd_open
 * (of every image); snap_create = rbd_snap_create2 (through the
 * exclusive-lock owner when one holds it); with several images (same
 * pool, same SNAPNAME) one thread per image, all started together, and
 * snap_create is the wall time until the last one returned (max_one: the
 * slowest single call).  lock_owner = whether some client owned the first
 * image's exclusive lock just before the snapshot (rbd_lock_get_owners).  Exit 0 on success, 1 on
 * any librados/librbd error (message on stderr).  A benchmark helper,
 * not part of vmsnap. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

static double
now_ms (void)
{
    struct timespec ts;

    clock_gettime (CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static int
die (const char *what, int r)
{
    fprintf (stderr, "rbd-snap-time: %s: %s\n", what, strerror (-r));
    return 1;
}

static int
no_progress (uint64_t done, uint64_t total, void *arg)
{
    (void) done;
    (void) total;
    (void) arg;
    return 0;
}

struct job {
    rbd_image_t image;
    const char *snap;
    int r;
    double ms;
};

static void *
snap_thread (void *arg)
{
    struct job *j = arg;
    double t = now_ms ();

    j->r = rbd_snap_create2 (j->image, j->snap, 0, no_progress, NULL);
    j->ms = now_ms () - t;
    return NULL;
}

int
main (int argc, char **argv)
{
    rados_t cluster;
    rados_ioctx_t io;
    struct job jobs[16];
    pthread_t th[16];
    char pool[256];
    const char *slash;
    double t0, t1, ta, t2, t3, t4, maxone = 0;
    rbd_lock_mode_t mode;
    char *owners[4];
    size_t n_owners = 4;
    int r, owned, n, i;

    if (argc < 4 || argc - 2 > 16) {
        fprintf (stderr, "usage: %s CEPH_CONF POOL/IMAGE SNAPNAME [POOL/IMAGE...]\n", argv[0]);
        return 2;
    }
    slash = strchr (argv[2], '/');
    if (!slash || (size_t) (slash - argv[2]) >= sizeof pool) {
        fprintf (stderr, "rbd-snap-time: expected POOL/IMAGE, got '%s'\n", argv[2]);
        return 2;
    }
    memcpy (pool, argv[2], slash - argv[2]);
    pool[slash - argv[2]] = '\0';
    n = argc - 3;               /* images: argv[2], argv[4...] */

    t0 = now_ms ();
    if ((r = rados_create (&cluster, NULL)) < 0)
        return die ("rados_create", r);
    if ((r = rados_conf_read_file (cluster, argv[1])) < 0)
        return die ("rados_conf_read_file", r);
    if ((r = rados_connect (cluster)) < 0)
        return die ("rados_connect", r);
    if ((r = rados_ioctx_create (cluster, pool, &io)) < 0)
        return die ("rados_ioctx_create", r);
    t1 = now_ms ();
    for (i = 0; i < n; i++) {
        const char *spec = i == 0 ? argv[2] : argv[3 + i];
        const char *s = strchr (spec, '/');

        if (!s || (size_t) (s - spec) != strlen (pool) || strncmp (spec, pool, s - spec) != 0) {
            fprintf (stderr, "rbd-snap-time: all images must be in pool '%s': '%s'\n", pool, spec);
            return 2;
        }
        if ((r = rbd_open (io, s + 1, &jobs[i].image, NULL)) < 0)
            return die ("rbd_open", r);
        jobs[i].snap = argv[3];
    }
    ta = now_ms ();
    r = rbd_lock_get_owners (jobs[0].image, &mode, owners, &n_owners);
    owned = r == 0 && n_owners > 0;
    if (r == 0)
        rbd_lock_get_owners_cleanup (owners, n_owners);
    t2 = now_ms ();
    if (n == 1) {
        snap_thread (&jobs[0]);
    } else {
        for (i = 0; i < n; i++)
            if ((r = pthread_create (&th[i], NULL, snap_thread, &jobs[i])) != 0)
                return die ("pthread_create", -r);
        for (i = 0; i < n; i++)
            pthread_join (th[i], NULL);
    }
    t3 = now_ms ();
    for (i = 0; i < n; i++) {
        if (jobs[i].r < 0)
            return die ("rbd_snap_create2", jobs[i].r);
        if (jobs[i].ms > maxone)
            maxone = jobs[i].ms;
    }
    for (i = 0; i < n; i++)
        if ((r = rbd_close (jobs[i].image)) < 0)
            return die ("rbd_close", r);
    t4 = now_ms ();
    rados_ioctx_destroy (io);
    rados_shutdown (cluster);
    printf ("images=%d connect_ms=%.3f open_ms=%.3f snap_create_ms=%.3f snap_max_one_ms=%.3f close_ms=%.3f lock_owner=%d\n",
            n, t1 - t0, ta - t1, t3 - t2, maxone, t4 - t3, owned);
    return 0;
}
