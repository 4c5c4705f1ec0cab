import { Controller } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { DomainError, RpcPatterns, type LinkDetails, type NodeHealth, type Resolution, type RpcResult } from '@shortener/contracts';
import { PinoLogger } from 'nestjs-pino';
import { LinkReader } from './link-reader';
import { NodeHealthMonitor } from './node-health.monitor';

@Controller()
export class ReaderRpcController {
  constructor(
    private readonly reader: LinkReader,
    private readonly health: NodeHealthMonitor,
    private readonly logger: PinoLogger,
  ) {}

  @MessagePattern(RpcPatterns.resolveLink)
  resolve(@Payload() request: { code: string }): Promise<RpcResult<Resolution>> {
    return this.run(() => this.reader.resolve(request.code));
  }

  @MessagePattern(RpcPatterns.getLink)
  details(@Payload() request: { code: string }): Promise<RpcResult<LinkDetails>> {
    return this.run(() => this.reader.details(request.code));
  }

  @MessagePattern(RpcPatterns.nodeHealth)
  async nodeHealth(): Promise<RpcResult<NodeHealth[]>> {
    return { ok: true, value: this.health.report() };
  }

  private async run<T>(work: () => Promise<T>): Promise<RpcResult<T>> {
    try {
      return { ok: true, value: await work() };
    } catch (error) {
      if (error instanceof DomainError) return { ok: false, error: error.toPayload() };
      this.logger.error({ err: error }, 'read failed');
      return { ok: false, error: { kind: 'dependency-unavailable', message: 'the read could not be completed' } };
    }
  }
}
