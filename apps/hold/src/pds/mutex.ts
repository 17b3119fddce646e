/** Runs tasks one at a time, in call order: the writer's in-process lock. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve()

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task)
    this.tail = result.catch(() => undefined)
    return result
  }

  /** Resolves once every task queued so far has settled. */
  async idle(): Promise<void> {
    await this.tail
  }
}
