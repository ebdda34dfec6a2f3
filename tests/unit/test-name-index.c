/* SPDX-License-Identifier: MIT */
/* The registry's name index against a plain array model, through many
 * random puts, updates and removals (backward-shift deletion is where
 * open addressing goes wrong). */
#include "config.h"

#include "server/name-index.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

enum { NAMES = 3000, STEPS = 200000 };

static char names[NAMES][16];
static long model[NAMES];             /* -1: absent */

static void check_all(const struct name_index *ni)
{
    size_t present = 0;

    for (int k = 0; k < NAMES; k++) {
        size_t v;
        bool found = name_index_get(ni, names[k], &v);
        cr_assert_eq(found, model[k] >= 0, "name %s", names[k]);
        if (found) {
            cr_assert_eq((long)v, model[k]);
            present++;
        }
    }
    cr_assert_eq(ni->n, present);
}

Test(name_index, matches_a_model)
{
    struct name_index ni = { 0 };
    unsigned seed = 12345;

    for (int k = 0; k < NAMES; k++) {
        snprintf(names[k], sizeof(names[k]), "export-%d", k);
        model[k] = -1;
    }
    for (int step = 0; step < STEPS; step++) {
        int k = rand_r(&seed) % NAMES;
        if (rand_r(&seed) % 3 == 0) {
            name_index_remove(&ni, names[k]);
            model[k] = -1;
        } else {
            cr_assert_eq(name_index_put(&ni, names[k], (size_t)step), 0);
            model[k] = step;
        }
        if (step % 20000 == 0)
            check_all(&ni);
    }
    check_all(&ni);
    for (int k = 0; k < NAMES; k++)
        name_index_remove(&ni, names[k]);
    cr_assert_eq(ni.n, 0);
    name_index_free(&ni);
}

Test(name_index, empty_index_finds_nothing)
{
    struct name_index ni = { 0 };
    size_t v;

    cr_assert(!name_index_get(&ni, "x", &v));
    name_index_remove(&ni, "x");
    name_index_free(&ni);
}
