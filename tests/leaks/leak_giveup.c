/* leak_giveup.c — a thread that blocks every signal (after it started: cgc unblocks its
 * stop signal for new threads) cannot be stopped, so the exit leak check must give up and
 * say so, not hang and not report the block main lost. Checked by check_giveup.sh. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void *volatile sink;

static void *deaf(void *arg) {
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (;;) pause();
    return NULL;
}

int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, deaf, NULL);
    usleep(100 * 1000);
    sink = malloc(4242);
    sink = NULL; /* lost, but nobody may say so: the check cannot run */
    puts("done");
    return 0;
}
