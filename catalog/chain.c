/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "catalog/chain.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cat_disk_add(struct cat_disk *d, struct cat_sidecar *sc, bool has_image)
{
    struct cat_backup *b = calloc(1, sizeof(*b));
    struct cat_backup **grown;
    enum cat_id_kind kind;

    if (!b)
        goto out_nomem;
    grown = realloc(d->backups, (d->nbackups + 1) * sizeof(*grown));
    if (!grown)
        goto out_nomem;
    d->backups = grown;
    /* The sidecar passed its checks, so its id parses. */
    if (cat_id_parse(sc->id, &kind, &b->stamp) < 0) {
        free(b);
        cat_sidecar_free(sc);
        return -EINVAL;
    }
    b->sc = sc;
    b->has_image = has_image;
    d->backups[d->nbackups++] = b;
    return 0;

out_nomem:
    free(b);
    cat_sidecar_free(sc);
    return -ENOMEM;
}

void cat_disk_clear(struct cat_disk *d)
{
    for (size_t i = 0; i < d->nbackups; i++) {
        cat_sidecar_free(d->backups[i]->sc);
        free(d->backups[i]);
    }
    free(d->backups);
    free(d->dir);
    d->backups = NULL;
    d->nbackups = 0;
    d->dir = NULL;
}

static int by_stamp(const void *a, const void *b)
{
    const struct cat_backup *x = *(struct cat_backup *const *)a;
    const struct cat_backup *y = *(struct cat_backup *const *)b;

    if (x->stamp != y->stamp)
        return x->stamp < y->stamp ? -1 : 1;
    /* One stamp per VM context, so this only orders a damaged folder. */
    return strcmp(x->sc->id, y->sc->id);
}

struct cat_backup *cat_disk_find(const struct cat_disk *d, const char *id)
{
    for (size_t i = 0; i < d->nbackups; i++)
        if (strcmp(d->backups[i]->sc->id, id) == 0)
            return d->backups[i];
    return NULL;
}

int cat_disk_link(struct cat_disk *d)
{
    if (d->nbackups > 1)
        qsort(d->backups, d->nbackups, sizeof(*d->backups), by_stamp);
    for (size_t i = 0; i < d->nbackups; i++) {
        struct cat_backup *b = d->backups[i];
        if (i > 0 && strcmp(b->sc->id, d->backups[i - 1]->sc->id) == 0)
            return -EEXIST;
        b->parent = b->sc->parent[0] ? cat_disk_find(d, b->sc->parent)
                                     : NULL;
        b->orphan = b->sc->parent[0] && !b->parent;
    }
    return 0;
}

/* Length of the chain ending at b; the root reached goes in *root. */
static size_t chain_length(const struct cat_backup *b,
                           const struct cat_backup **root)
{
    size_t n = 1;

    for (; b->parent; b = b->parent)
        n++;
    *root = b;
    return n;
}

int cat_chain_of(const struct cat_disk *d, const struct cat_backup *b,
                 struct cat_backup ***out, size_t *n, struct sd_error *err)
{
    const struct cat_backup *root;
    size_t len = chain_length(b, &root);
    struct cat_backup **arr;

    (void)d;
    if (root->orphan)
        return sd_error_set(err, -ENOENT, "the chain of %s is broken: %s "
                            "needs %s, which is missing", b->sc->id,
                            root->sc->id, root->sc->parent);
    arr = malloc(len * sizeof(*arr));
    if (!arr)
        return sd_error_set(err, -ENOMEM, "out of memory");
    for (size_t i = len; i > 0; i--, b = b->parent)
        arr[i - 1] = (struct cat_backup *)b;
    *out = arr;
    *n = len;
    return 0;
}

bool cat_backup_usable(const struct cat_backup *b)
{
    for (; b; b = b->parent) {
        if (b->orphan || !b->has_image ||
            b->sc->status != CAT_STATUS_COMPLETED)
            return false;
    }
    return true;
}

struct cat_backup *cat_disk_latest_completed(const struct cat_disk *d)
{
    for (size_t i = d->nbackups; i > 0; i--)
        if (cat_backup_usable(d->backups[i - 1]))
            return d->backups[i - 1];
    return NULL;
}

int cat_disk_children(const struct cat_disk *d, const struct cat_backup *b,
                      struct cat_backup ***out, size_t *n)
{
    struct cat_backup **arr = NULL;
    size_t count = 0;

    for (size_t i = 0; i < d->nbackups; i++)
        count += d->backups[i]->parent == b;
    if (count > 0 && !(arr = malloc(count * sizeof(*arr))))
        return -ENOMEM;
    count = 0;
    for (size_t i = 0; i < d->nbackups; i++)
        if (d->backups[i]->parent == b)
            arr[count++] = d->backups[i];
    *out = arr;
    *n = count;
    return 0;
}

/* "a, b, c and 2 more" for the message. */
static void list_ids(char *buf, size_t size, struct cat_backup **arr,
                     size_t n)
{
    enum { SHOWN = 3 };
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < n && i < SHOWN && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s",
                                 i ? ", " : "", arr[i]->sc->id);
    if (n > SHOWN && used < size)
        snprintf(buf + used, size - used, " and %zu more", n - SHOWN);
}

int cat_disk_can_delete(const struct cat_disk *d, const struct cat_backup *b,
                        struct sd_error *err)
{
    struct cat_backup **children;
    char ids[256];
    size_t n;

    if (b->sc->status == CAT_STATUS_RUNNING)
        return sd_error_set(err, -EBUSY, "%s is running", b->sc->id);
    if (cat_disk_children(d, b, &children, &n) < 0)
        return sd_error_set(err, -ENOMEM, "out of memory");
    if (n == 0)
        return 0;
    list_ids(ids, sizeof(ids), children, n);
    free(children);
    return sd_error_set(err, -EBUSY, "%s has %zu dependent backup%s: %s",
                        b->sc->id, n, n == 1 ? "" : "s", ids);
}

/* --- relative backing paths ------------------------------------------ */

static bool clean_relative_path(const char *p)
{
    if (!*p || p[0] == '/')
        return false;
    for (const char *c = p; *c;) {
        size_t len = strcspn(c, "/");
        if (len == 0 || (len == 1 && c[0] == '.') ||
            (len == 2 && c[0] == '.' && c[1] == '.'))
            return false;
        c += len;
        if (*c == '/' && !*++c)
            return false;           /* trailing slash */
    }
    return true;
}

int cat_relative_backing(const char *child_image, const char *parent_image,
                         char **out, struct sd_error *err)
{
    size_t common = 0, ups = 0;

    if (!clean_relative_path(child_image) || !clean_relative_path(parent_image))
        return sd_error_set(err, -EINVAL, "image paths must be relative, "
                            "without . or .. components");
    /* Length of the shared leading folders (up to and including '/'). */
    for (size_t i = 0; child_image[i] && child_image[i] == parent_image[i];
         i++)
        if (child_image[i] == '/')
            common = i + 1;
    for (const char *c = child_image + common; *c; c++)
        ups += *c == '/';
    size_t rest = strlen(parent_image + common);
    char *s = malloc(ups * 3 + rest + 1);
    if (!s)
        return sd_error_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < ups; i++)
        memcpy(s + 3 * i, "../", 3);
    memcpy(s + 3 * ups, parent_image + common, rest + 1);
    *out = s;
    return 0;
}
