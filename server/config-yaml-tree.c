/* SPDX-License-Identifier: MIT */
/*
 * A small YAML tree built from libyaml's event API, with line numbers.
 *
 * Notes on the design:
 *
 * - The event API, not libyaml's document loader: we see every anchor,
 *   alias and tag as it comes and refuse it (a config file needs none,
 *   and aliases are how a small file becomes a huge tree), and we stop at
 *   SD_CONFIG_DEPTH_MAX levels and SD_CONFIG_NODES_MAX nodes before
 *   libyaml or we allocate more. With the file cap (SD_CONFIG_FILE_MAX)
 *   that bounds the memory one file can cost.
 * - One document per file; an empty file is a NULL tree.
 * - Scalars keep their bytes (embedded NUL refused) and whether they were
 *   plain, since only a plain scalar can be a null, a boolean or a number.
 */
#include "config.h"

#include "server/config-yaml-tree.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tree_builder {
    yaml_parser_t parser;
    const char *path;
    unsigned nodes;
    struct sd_error *err;
};

int sd_ytree_error(const char *path, const struct sd_ynode *at,
                   struct sd_error *err, int code, const char *fmt, ...)
{
    char msg[SD_ERROR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return sd_error_set(err, code, "%s:%u: %s", path, at ? at->line : 1,
                        msg);
}

void sd_ytree_free(struct sd_ynode *n)
{
    size_t i;

    if (!n)
        return;
    for (i = 0; i < n->n; i++)
        sd_ytree_free(n->items[i]);
    free(n->items);
    free(n->value);
    free(n);
}

static int syntax_error(struct tree_builder *b)
{
    const yaml_parser_t *p = &b->parser;
    const char *problem = p->problem ? p->problem : "syntax error";

    if (p->error == YAML_MEMORY_ERROR)
        return sd_error_set(b->err, -ENOMEM, "%s: out of memory", b->path);
    if (p->context)
        return sd_error_set(b->err, -EINVAL, "%s:%zu: %s %s", b->path,
                            p->problem_mark.line + 1, p->context, problem);
    return sd_error_set(b->err, -EINVAL, "%s:%zu: %s", b->path,
                        p->problem_mark.line + 1, problem);
}

static int next_event(struct tree_builder *b, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&b->parser, ev))
        return syntax_error(b);
    return 0;
}

static int line_error(struct tree_builder *b, const yaml_event_t *ev,
                      const char *what)
{
    return sd_error_set(b->err, -EINVAL, "%s:%zu: %s", b->path,
                        ev->start_mark.line + 1, what);
}

static struct sd_ynode *node_new(struct tree_builder *b,
                                 const yaml_event_t *ev,
                                 enum sd_ynode_kind kind)
{
    struct sd_ynode *n;

    if (++b->nodes > SD_CONFIG_NODES_MAX) {
        line_error(b, ev, "too many YAML nodes");
        return NULL;
    }
    n = calloc(1, sizeof(*n));
    if (!n) {
        sd_error_set(b->err, -ENOMEM, "%s: out of memory", b->path);
        return NULL;
    }
    n->kind = kind;
    n->line = (unsigned)ev->start_mark.line + 1;
    return n;
}

/* Refuse what a config file never needs and what could blow a small
 * file up: anchors, aliases, tags. */
static int check_plain_event(struct tree_builder *b, const yaml_event_t *ev)
{
    const yaml_char_t *anchor = NULL, *tag = NULL;

    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        return line_error(b, ev, "YAML aliases are not supported");
    case YAML_SCALAR_EVENT:
        anchor = ev->data.scalar.anchor;
        tag = ev->data.scalar.tag;
        break;
    case YAML_SEQUENCE_START_EVENT:
        anchor = ev->data.sequence_start.anchor;
        tag = ev->data.sequence_start.tag;
        break;
    case YAML_MAPPING_START_EVENT:
        anchor = ev->data.mapping_start.anchor;
        tag = ev->data.mapping_start.tag;
        break;
    default:
        return line_error(b, ev, "unexpected YAML event");
    }
    if (anchor)
        return line_error(b, ev, "YAML anchors are not supported");
    if (tag)
        return line_error(b, ev, "YAML tags are not supported");
    return 0;
}

static struct sd_ynode *scalar_node(struct tree_builder *b,
                                    const yaml_event_t *ev)
{
    size_t len = ev->data.scalar.length;
    struct sd_ynode *n;

    if (memchr(ev->data.scalar.value, '\0', len)) {
        line_error(b, ev, "value holds a NUL byte");
        return NULL;
    }
    n = node_new(b, ev, SD_YSCALAR);
    if (!n)
        return NULL;
    n->value = malloc(len + 1);
    if (!n->value) {
        sd_error_set(b->err, -ENOMEM, "%s: out of memory", b->path);
        sd_ytree_free(n);
        return NULL;
    }
    memcpy(n->value, ev->data.scalar.value, len);
    n->value[len] = '\0';
    n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    return n;
}

static int push_item(struct tree_builder *b, struct sd_ynode *parent,
                     struct sd_ynode *child, size_t *cap)
{
    if (parent->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        struct sd_ynode **items = realloc(parent->items,
                                          ncap * sizeof(*items));

        if (!items) {
            sd_ytree_free(child);
            return sd_error_set(b->err, -ENOMEM, "%s: out of memory",
                                b->path);
        }
        parent->items = items;
        *cap = ncap;
    }
    parent->items[parent->n++] = child;
    return 0;
}

static struct sd_ynode *build_node(struct tree_builder *b, yaml_event_t *ev,
                                   unsigned depth);

/* Children of a mapping (keys and values alternate) or sequence, up to
 * the matching end event. */
static int build_children(struct tree_builder *b, struct sd_ynode *parent,
                          yaml_event_type_t end, unsigned depth)
{
    size_t cap = 0;

    for (;;) {
        yaml_event_t ev;
        struct sd_ynode *child;
        int ret = next_event(b, &ev);

        if (ret < 0)
            return ret;
        if (ev.type == end) {
            yaml_event_delete(&ev);
            return 0;
        }
        child = build_node(b, &ev, depth + 1);
        yaml_event_delete(&ev);
        if (!child)
            return b->err ? b->err->code : -EINVAL;
        ret = push_item(b, parent, child, &cap);
        if (ret < 0)
            return ret;
    }
}

static struct sd_ynode *build_node(struct tree_builder *b, yaml_event_t *ev,
                                   unsigned depth)
{
    enum sd_ynode_kind kind;
    yaml_event_type_t end;
    struct sd_ynode *n;

    if (check_plain_event(b, ev) < 0)
        return NULL;
    if (ev->type == YAML_SCALAR_EVENT)
        return scalar_node(b, ev);
    if (depth >= SD_CONFIG_DEPTH_MAX) {
        line_error(b, ev, "YAML nested too deep");
        return NULL;
    }
    kind = ev->type == YAML_MAPPING_START_EVENT ? SD_YMAP : SD_YSEQ;
    end = kind == SD_YMAP ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
    n = node_new(b, ev, kind);
    if (!n)
        return NULL;
    if (build_children(b, n, end, depth) < 0) {
        sd_ytree_free(n);
        return NULL;
    }
    return n;
}

/* Expect an event of the given type and drop it. */
static int expect_event(struct tree_builder *b, yaml_event_type_t type)
{
    yaml_event_t ev;
    int ret = next_event(b, &ev);

    if (ret < 0)
        return ret;
    if (ev.type != type)
        ret = line_error(b, &ev, "only one YAML document per file");
    yaml_event_delete(&ev);
    return ret;
}

/* After STREAM_START: an empty stream, or one document. */
static int build_document(struct tree_builder *b, struct sd_ynode **out)
{
    yaml_event_t ev;
    int ret = next_event(b, &ev);

    if (ret < 0)
        return ret;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        return 0;
    }
    yaml_event_delete(&ev);         /* DOCUMENT_START */
    ret = next_event(b, &ev);
    if (ret < 0)
        return ret;
    *out = build_node(b, &ev, 0);
    yaml_event_delete(&ev);
    if (!*out)
        return b->err ? b->err->code : -EINVAL;
    ret = expect_event(b, YAML_DOCUMENT_END_EVENT);
    if (ret == 0)
        ret = expect_event(b, YAML_STREAM_END_EVENT);
    return ret;
}

int sd_ytree_parse(const char *path, const char *data, size_t len,
                   struct sd_ynode **out, struct sd_error *err)
{
    struct sd_error local;
    struct tree_builder b = { .path = path, .err = err ? err : &local };
    struct sd_ynode *root = NULL;
    int ret;

    if (!yaml_parser_initialize(&b.parser))
        return sd_error_set(err, -ENOMEM, "%s: out of memory", path);
    yaml_parser_set_input_string(&b.parser, (const unsigned char *)data,
                                 len);
    ret = expect_event(&b, YAML_STREAM_START_EVENT);
    if (ret == 0)
        ret = build_document(&b, &root);
    yaml_parser_delete(&b.parser);
    if (ret < 0) {
        sd_ytree_free(root);
        return ret;
    }
    *out = root;
    return 0;
}

bool sd_ynode_is_null(const struct sd_ynode *n)
{
    static const char *const nulls[] = { "", "~", "null", "Null", "NULL" };
    size_t i;

    if (n->kind != SD_YSCALAR || !n->plain)
        return false;
    for (i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
        if (strcmp(n->value, nulls[i]) == 0)
            return true;
    return false;
}

int sd_ymap_walk(const char *path, const struct sd_ynode *map,
                 const struct sd_yfield *fields, size_t n_fields,
                 void *obj, unsigned *lines, struct sd_error *err)
{
    size_t i, f;
    int ret;

    if (map->kind != SD_YMAP)
        return sd_ytree_error(path, map, err, -EINVAL,
                              "expected a mapping of keys to values");
    for (f = 0; f < n_fields; f++)
        lines[f] = 0;
    for (i = 0; i + 1 < map->n; i += 2) {
        const struct sd_ynode *key = map->items[i], *val = map->items[i + 1];

        if (key->kind != SD_YSCALAR)
            return sd_ytree_error(path, key, err, -EINVAL,
                                  "a key must be a plain word");
        for (f = 0; f < n_fields; f++)
            if (strcmp(key->value, fields[f].key) == 0)
                break;
        if (f == n_fields)
            return sd_ytree_error(path, key, err, -EINVAL,
                                  "unknown key \"%.64s\"", key->value);
        if (lines[f])
            return sd_ytree_error(path, key, err, -EINVAL,
                                  "duplicate key \"%s\" (first at line %u)",
                                  fields[f].key, lines[f]);
        lines[f] = key->line;
        if (sd_ynode_is_null(val))
            continue;               /* an empty value keeps the default */
        ret = fields[f].set(path, val, obj, err);
        if (ret < 0)
            return ret;
    }
    return 0;
}

int sd_ynode_string(const char *path, const struct sd_ynode *n,
                    const char *what, char **out, struct sd_error *err)
{
    char *s;

    if (n->kind != SD_YSCALAR)
        return sd_ytree_error(path, n, err, -EINVAL,
                              "%s: expected a single value, not a %s", what,
                              n->kind == SD_YMAP ? "mapping" : "list");
    s = strdup(n->value);
    if (!s)
        return sd_error_set(err, -ENOMEM, "%s: out of memory", path);
    free(*out);
    *out = s;
    return 0;
}

int sd_ynode_bool(const char *path, const struct sd_ynode *n,
                  const char *what, bool *out, struct sd_error *err)
{
    if (n->kind == SD_YSCALAR && n->plain && strcmp(n->value, "true") == 0)
        *out = true;
    else if (n->kind == SD_YSCALAR && n->plain &&
             strcmp(n->value, "false") == 0)
        *out = false;
    else
        return sd_ytree_error(path, n, err, -EINVAL,
                              "%s: expected true or false", what);
    return 0;
}

int sd_ynode_enum(const char *path, const struct sd_ynode *n,
                  const char *what, const char *const *names,
                  size_t n_names, int *out, struct sd_error *err)
{
    char list[128] = "";
    size_t i, used = 0;

    if (n->kind == SD_YSCALAR) {
        for (i = 0; i < n_names; i++) {
            if (strcmp(n->value, names[i]) == 0) {
                *out = (int)i;
                return 0;
            }
        }
    }
    for (i = 0; i < n_names && used < sizeof(list); i++) {
        int w = snprintf(list + used, sizeof(list) - used, "%s%s",
                         i ? ", " : "", names[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return sd_ytree_error(path, n, err, -EINVAL, "%s: expected one of %s",
                          what, list);
}
