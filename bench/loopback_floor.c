/* loopback_floor: what one delivery costs the kernel, with no server code.
 *
 *   build/bench/loopback_floor <connections> <sends/s> <seconds> [send|uring]
 *
 * Opens <connections> loopback TCP connections. A writer sends a 300-byte
 * message (a quote frame's size) to each connection in turn, one message
 * per connection per round, at <sends/s>: the fan-out bench's load at
 * 10,000 clients, where no client gets two messages close enough together
 * to share a write. A reader process drains them with epoll the way
 * fanout_client does (a short nap after a light poll, TCP_QUICKACK).
 * Prints the writer's and the reader's user and system CPU per message.
 * `uring` submits each round's sends through one io_uring_enter instead of
 * one send(2) each, to see how much of the cost is the system call itself.
 *
 * Not run by `make bench`: docs/perf-fan.md quotes what it measured. */
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MSG_BYTES 300
#define ROUND_MAX 1000      /* sends per io_uring submission at most */
#define READER_NAP_US 500   /* as fanout_client --nap-us */
#define READER_LIGHT_POLL 128
#define TICK_US 200

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void cpu_s(double *user, double *sys) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  *user = (double)r.ru_utime.tv_sec + (double)r.ru_utime.tv_usec / 1e6;
  *sys = (double)r.ru_stime.tv_sec + (double)r.ru_stime.tv_usec / 1e6;
}

static void reader(const int *fd, int n, double seconds) {
  int ep = epoll_create1(0);
  for (int i = 0; i < n; i++) {
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd[i], &ev);
  }
  static char buf[65536];
  struct epoll_event evs[1024];
  long bytes = 0;
  double u0, s0, u1, s1, t0 = now_s();
  cpu_s(&u0, &s0);
  while (now_s() - t0 < seconds) {
    int k = epoll_wait(ep, evs, 1024, 100);
    for (int i = 0; i < k; i++) {
      ssize_t r = read(evs[i].data.fd, buf, sizeof(buf));
      if (r > 0) bytes += r;
      int one = 1;
      setsockopt(evs[i].data.fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
    }
    if (k < READER_LIGHT_POLL) usleep(READER_NAP_US);
  }
  cpu_s(&u1, &s1);
  double msgs = (double)bytes / MSG_BYTES;
  if (msgs > 0)
    printf("reader: %.0f messages, user %.2f us, sys %.2f us per message\n", msgs, (u1 - u0) * 1e6 / msgs,
           (s1 - s0) * 1e6 / msgs);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: loopback_floor <connections> <sends/s> <seconds> [send|uring]\n");
    return 2;
  }
  int n = atoi(argv[1]);
  double rate = atof(argv[2]), seconds = atof(argv[3]);
  int uring = argc > 4 && !strcmp(argv[4], "uring");
  if (n <= 0 || rate <= 0 || seconds <= 0) return 2;
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);

  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof(a);
  if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 4096) ||
      getsockname(ls, (struct sockaddr *)&a, &alen)) {
    perror("listen");
    return 1;
  }
  int *cfd = calloc((size_t)n, sizeof(int)), *sfd = calloc((size_t)n, sizeof(int));
  for (int i = 0; i < n; i++) {
    cfd[i] = socket(AF_INET, SOCK_STREAM, 0);
    if (cfd[i] < 0 || connect(cfd[i], (struct sockaddr *)&a, sizeof(a)) || (sfd[i] = accept(ls, NULL, NULL)) < 0) {
      perror("connect (raise ulimit -n?)");
      return 1;
    }
    int one = 1;
    setsockopt(sfd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    reader(cfd, n, seconds + 1);
    return 0;
  }

  static char msg[MSG_BYTES];
  memset(msg, 'x', sizeof(msg));
  struct io_uring ring;
  if (uring && io_uring_queue_init(ROUND_MAX * 2, &ring, 0)) {
    perror("io_uring_queue_init");
    return 1;
  }
  usleep(200000);
  long sent = 0;
  int next = 0;
  double u0, s0, u1, s1, t0 = now_s();
  cpu_s(&u0, &s0);
  while (now_s() - t0 < seconds) {
    double due = (now_s() - t0) * rate;
    while ((double)sent < due) {
      int round = (int)(due - (double)sent);
      if (round < 1) round = 1;
      if (round > ROUND_MAX) round = ROUND_MAX;
      for (int j = 0; j < round; j++, sent++) {
        int fd = sfd[next];
        next = (next + 1) % n;
        if (!uring) {
          (void)send(fd, msg, sizeof(msg), MSG_DONTWAIT | MSG_NOSIGNAL);
        } else {
          io_uring_prep_send(io_uring_get_sqe(&ring), fd, msg, sizeof(msg), MSG_DONTWAIT | MSG_NOSIGNAL);
        }
      }
      if (uring) {
        io_uring_submit_and_wait(&ring, (unsigned)round);
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) seen++;
        io_uring_cq_advance(&ring, seen);
      }
    }
    usleep(TICK_US);
  }
  cpu_s(&u1, &s1);
  double dt = now_s() - t0;
  printf("writer (%s): %ld sends in %.1f s = %.0f/s, user %.2f us, sys %.2f us per send\n", uring ? "io_uring" : "send",
         sent, dt, (double)sent / dt, (u1 - u0) * 1e6 / (double)sent, (s1 - s0) * 1e6 / (double)sent);
  fflush(stdout);
  waitpid(pid, NULL, 0);
  return 0;
}
