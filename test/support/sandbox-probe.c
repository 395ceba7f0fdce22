// Reports what a process may do, one `name=result` line per check, on stdout: test/dist/unit.test.ts
// runs it as an instance of tswl-host@.service (ExecStart replaced, sandbox as shipped), with one
// sandboxing directive taken out at a time, and as a plain service for the baseline. A check's
// result is "ok", an errno name, or the signal that killed it ("SYS": the system-call filter);
// each check runs in a child process so that a killed one ends only itself. Built static, so it
// runs in any machine.
//
//   tswl-sandbox-probe DIR    DIR: the unit's own runtime directory, which must stay writable
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *home, *runtime_dir, *own_dir;

static void value(const char *name, const char *v) { printf("%s=%s\n", name, v ? v : ""); }

/** Runs check in a child; it returns < 0 with errno set when refused. */
static void check(const char *name, long (*fn)(void)) {
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) _exit(fn() < 0 ? errno : 0);
  int status = 0;
  waitpid(child, &status, 0);
  if (WIFSIGNALED(status)) {
    value(name, sigabbrev_np(WTERMSIG(status)));
  } else if (WEXITSTATUS(status) != 0) {
    value(name, strerrorname_np(WEXITSTATUS(status)));
  } else {
    value(name, "ok");
  }
}

/** A field of /proc/self/status (NoNewPrivs, Seccomp_filters, CapBnd…). */
static void status_field(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256], v[128] = "", name[64];
  size_t len = strlen(field);
  while (f && fgets(line, sizeof line, f)) {
    if (strncmp(line, field, len) == 0 && line[len] == ':') {
      sscanf(line + len + 1, "%127s", v);
      break;
    }
  }
  if (f) fclose(f);
  snprintf(name, sizeof name, "status_%s", field);
  value(name, v);
}

/** The namespace /proc/self/ns/<kind> names, e.g. "net:[4026531840]". */
static void namespace_of(const char *kind) {
  char path[64], target[128] = "", name[64];
  snprintf(path, sizeof path, "/proc/self/ns/%s", kind);
  ssize_t n = readlink(path, target, sizeof target - 1);
  target[n < 0 ? 0 : n] = 0;
  snprintf(name, sizeof name, "ns_%s", kind);
  value(name, target);
}

static long create_in(const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/tswl-probe-%d", dir ? dir : "/nonexistent", (int)getpid());
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  close(fd);
  unlink(path);
  return 0;
}

static long write_root(void) { return create_in("/"); }
static long write_home(void) { return create_in(home); }
static long write_runtime_dir(void) { return create_in(runtime_dir); }
static long write_own_runtime_dir(void) { return create_in(own_dir); }
static long write_tmp(void) { return create_in("/tmp"); }
static long dev_net_tun(void) {
  struct stat st;
  return stat("/dev/net/tun", &st);
}
static long kallsyms(void) { return open("/proc/kallsyms", O_RDONLY | O_CLOEXEC); }
static long modules_dir(void) { return open("/usr/lib/modules", O_RDONLY | O_DIRECTORY); }
static long socket_unix(void) { return socket(AF_UNIX, SOCK_STREAM, 0); }
static long socket_inet(void) { return socket(AF_INET, SOCK_STREAM, 0); }
static long socket_inet6(void) { return socket(AF_INET6, SOCK_DGRAM, 0); }
static long socket_netlink(void) { return socket(AF_NETLINK, SOCK_RAW, 0); }
static long setuid_self(void) { return syscall(SYS_setuid, getuid()); }
static long lower_priority(void) { return setpriority(PRIO_PROCESS, 0, 1); }
static long ptrace_traceme(void) { return ptrace(PTRACE_TRACEME, 0, NULL, NULL); }
static long personality_32(void) { return personality(PER_LINUX32); }
static long unshare_user(void) { return unshare(CLONE_NEWUSER); }

/** getpid through the 32-bit system call entry (int 0x80): another architecture to seccomp. */
static long getpid_i386(void) {
  long r;
  __asm__ volatile("int $0x80" : "=a"(r) : "a"(20) : "memory");
  if (r < 0) {
    errno = (int)-r;
    return -1;
  }
  return r;
}

static long chmod_suid(void) {
  char path[64];
  snprintf(path, sizeof path, "/tmp/tswl-probe-suid-%d", (int)getpid());
  int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0700);
  if (fd < 0) return -1;
  long r = fchmod(fd, 04700);
  close(fd);
  unlink(path);
  return r;
}

int main(int argc, char **argv) {
  home = getenv("HOME");
  runtime_dir = getenv("XDG_RUNTIME_DIR");
  own_dir = argc > 1 ? argv[1] : NULL;
  char v[64];
  struct stat st;

  status_field("NoNewPrivs"); // NoNewPrivileges=
  status_field("Seccomp_filters"); // the system-call filters of all the directives
  status_field("CapBnd"); // CapabilityBoundingSet=
  namespace_of("user"); // PrivateUsers=
  namespace_of("net"); // PrivateNetwork=
  namespace_of("ipc"); // PrivateIPC=
  namespace_of("uts"); // ProtectHostname=
  namespace_of("mnt");
  // ProtectSystem=, ProtectHome=, PrivateTmp=, RuntimeDirectory=
  check("write_root", write_root);
  check("write_home", write_home);
  check("write_runtime_dir", write_runtime_dir);
  check("write_own_runtime_dir", write_own_runtime_dir);
  check("write_tmp", write_tmp);
  snprintf(v, sizeof v, "%llu", stat("/tmp", &st) == 0 ? (unsigned long long)st.st_ino : 0ULL);
  value("tmp_inode", v);
  check("dev_net_tun", dev_net_tun); // PrivateDevices=
  check("kallsyms", kallsyms); // ProtectKernelTunables=
  check("modules_dir", modules_dir); // ProtectKernelModules=
  // ProtectKernelLogs=: /proc/kmsg covered by an inaccessible file (mode 0)
  snprintf(v, sizeof v, "%o", stat("/proc/kmsg", &st) == 0 ? (unsigned)st.st_mode : 0U);
  value("kmsg_mode", v);
  // KeyringMode=: the session keyring
  snprintf(v, sizeof v, "%ld", syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 0));
  value("session_keyring", v);
  // RestrictAddressFamilies=
  check("socket_unix", socket_unix);
  check("socket_inet", socket_inet);
  check("socket_inet6", socket_inet6);
  check("socket_netlink", socket_netlink);
  // SystemCallFilter= (@privileged, @resources, and what @system-service leaves out) and
  // SystemCallErrorNumber=
  check("setuid_self", setuid_self);
  check("setpriority", lower_priority);
  check("ptrace_traceme", ptrace_traceme);
  check("syscall_i386", getpid_i386); // SystemCallArchitectures=
  check("personality", personality_32); // LockPersonality=
  check("unshare_user", unshare_user); // RestrictNamespaces=
  check("chmod_suid", chmod_suid); // RestrictSUIDSGID=
  mode_t mask = umask(0); // UMask=
  snprintf(v, sizeof v, "%04o", (unsigned)mask);
  value("umask", v);
  return 0;
}
