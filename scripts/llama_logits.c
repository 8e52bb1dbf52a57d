// llama.cpp as the oracle for GGUF files: tokenizes a prompt with the file's own tokenizer, runs
// it in one batch with logits at every position, then decodes greedily one token at a time.
// Prints {"prompt_ids": [...], "greedy_ids": [...], "vocab": N} on stdout and writes the prompt's
// logits, [prompt tokens, vocab] little-endian f32, to LOGITS_OUT.
//
// Built and run by scripts/gguf_oracle.sh against the libllama of a llama.cpp build
// (../shared/LLAMA-CPP.md). Usage: llama_logits MODEL.gguf PROMPT GREEDY_TOKENS LOGITS_OUT
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level >= GGML_LOG_LEVEL_ERROR) {
        fputs(text, stderr);
    }
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) {
        if (v[i] > v[best]) {
            best = i;
        }
    }
    return best;
}

static void print_ids(const char *key, const llama_token *ids, int n) {
    printf("\"%s\": [", key);
    for (int i = 0; i < n; i++) {
        printf(i ? ", %d" : "%d", ids[i]);
    }
    printf("]");
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL.gguf PROMPT GREEDY_TOKENS LOGITS_OUT\n", argv[0]);
        return 2;
    }
    const char *prompt = argv[2];
    const int greedy = atoi(argv[3]);
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);
    llama_token ids[1024];
    const int n = llama_tokenize(vocab, prompt, (int)strlen(prompt), ids, 512, true, true);
    if (n <= 0 || n + greedy > 1024) {
        fprintf(stderr, "prompt gives %d tokens\n", n);
        return 1;
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 1024;
    cp.n_batch = 1024;
    cp.n_ubatch = 1024;
    cp.n_threads = 2;
    cp.n_threads_batch = 2;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.op_offload = false;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    struct llama_batch batch = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        batch.token[i] = ids[i];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = n;
    if (llama_decode(ctx, batch) != 0) {
        fprintf(stderr, "llama_decode failed on the prompt\n");
        return 1;
    }
    FILE *out = fopen(argv[4], "wb");
    if (!out) {
        fprintf(stderr, "cannot write %s\n", argv[4]);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        fwrite(llama_get_logits_ith(ctx, i), sizeof(float), n_vocab, out);
    }
    fclose(out);
    llama_token gen[512];
    llama_token next = argmax(llama_get_logits_ith(ctx, n - 1), n_vocab);
    for (int g = 0; g < greedy; g++) {
        gen[g] = next;
        if (g + 1 == greedy) {
            break;
        }
        struct llama_batch one = llama_batch_get_one(&gen[g], 1);
        if (llama_decode(ctx, one) != 0) {
            fprintf(stderr, "llama_decode failed at greedy token %d\n", g);
            return 1;
        }
        next = argmax(llama_get_logits_ith(ctx, -1), n_vocab);
    }
    printf("{");
    print_ids("prompt_ids", ids, n);
    printf(", ");
    print_ids("greedy_ids", gen, greedy);
    printf(", \"vocab\": %d}\n", n_vocab);
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
