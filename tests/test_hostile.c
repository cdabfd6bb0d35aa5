#include <criterion/criterion.h>
Test(hostile, placeholder) { cr_assert(1); }
