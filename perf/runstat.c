/* runstat.c — run a command, then report its wall time and peak RSS (used by perf/compare).
 *
 * usage: runstat FD COMMAND [ARGS...]
 *   Runs COMMAND with the same stdin/stdout/stderr/environment, waits for it with wait4,
 *   and writes one line "STATUS WALL_NS MAXRSS_KIB CPU_NS" to file descriptor FD (which
 *   COMMAND does not inherit).  STATUS is the exit code, or -SIGNAL if it was killed;
 *   CPU_NS is user + system time of COMMAND and its waited-for children.
 *   runstat itself exits 0 if it could run COMMAND at all.
 *   If RUNSTAT_PRELOAD is set, COMMAND (only) runs with LD_PRELOAD set to its value: an
 *   allocator preloaded into runstat too would change the starting RSS of the child.
 *
 * Why not os.wait4 from Python directly: Linux folds the peak RSS of the memory image a
 * process had *before* exec into its ru_maxrss.  A child forked from the Python driver
 * starts as a copy of Python (~15 MiB, more once results pile up), which would swamp a
 * workload whose real peak is 2-3 MiB.  A child forked from this tiny program starts at
 * about 1 MiB, like a program started from a shell.  vfork is used so the child does not
 * even copy our page tables before exec.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: runstat FD COMMAND [ARGS...]\n");
        return 2;
    }
    int fd = atoi(argv[1]);
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        fprintf(stderr, "runstat: bad file descriptor %s: %s\n", argv[1], strerror(errno));
        return 2;
    }

    const char *preload = getenv("RUNSTAT_PRELOAD");
    if (preload && *preload) setenv("LD_PRELOAD", preload, 1);
    unsetenv("RUNSTAT_PRELOAD");

    long long t0 = now_ns();
    pid_t pid = vfork();
    if (pid < 0) {
        fprintf(stderr, "runstat: vfork: %s\n", strerror(errno));
        return 2;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        _exit(127); /* after vfork only _exit is allowed; 127 like the shell */
    }
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "runstat: wait4: %s\n", strerror(errno));
            return 2;
        }
    }
    long long wall = now_ns() - t0;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    long long cpu = (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
                    (long long)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
    dprintf(fd, "%d %lld %ld %lld\n", code, wall, ru.ru_maxrss, cpu);
    return 0;
}
