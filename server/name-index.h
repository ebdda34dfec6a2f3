/* SPDX-License-Identifier: MIT */
/*
 * A map from names (borrowed strings) to indexes: open addressing with
 * linear probing and backward-shift deletion. The registry finds an
 * export by name with it, so reloads and handshakes stay flat with
 * thousands of exports.
 */
#ifndef SENDENSE_SERVER_NAME_INDEX_H
#define SENDENSE_SERVER_NAME_INDEX_H

#include <stdbool.h>
#include <stddef.h>

struct name_index_entry {
    const char *key;         /* NULL: empty; owned by the caller */
    size_t value;
};

struct name_index {
    struct name_index_entry *slots;
    size_t cap;              /* a power of two, or 0 */
    size_t n;
};

/* Insert or update; key must stay valid while it is in the index.
 * 0 or -ENOMEM. */
int name_index_put(struct name_index *ni, const char *key, size_t value);
bool name_index_get(const struct name_index *ni, const char *key,
                    size_t *value);
void name_index_remove(struct name_index *ni, const char *key);
void name_index_free(struct name_index *ni);

#endif
