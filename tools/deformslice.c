#include <stdio.h>

int main(void) {
  fprintf(stderr, "deformslice: under construction\n");
  return 1;
}
