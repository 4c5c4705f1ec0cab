import { Controller } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import {
  codeRequestSchema,
  DomainError,
  keyIdRequestSchema,
  listKeysRequestSchema,
  listLinksRequestSchema,
  nodeHealthRequestSchema,
  parseRpcPayload,
  RpcPatterns,
  type ApiKeyCredential,
  type ApiKeyInfo,
  type LinkDetails,
  type LinkPage,
  type NodeHealth,
  type Resolution,
  type RpcResult,
} from '@shortener/contracts';
import { PinoLogger } from 'nestjs-pino';
import { CatalogReader } from './catalog-reader';
import { LinkReader } from './link-reader';
import { NodeHealthMonitor } from './node-health.monitor';

@Controller()
export class ReaderRpcController {
  constructor(
    private readonly reader: LinkReader,
    private readonly catalog: CatalogReader,
    private readonly health: NodeHealthMonitor,
    private readonly logger: PinoLogger,
  ) {}

  @MessagePattern(RpcPatterns.resolveLink)
  resolve(@Payload() payload: unknown): Promise<RpcResult<Resolution>> {
    return this.run(() => this.reader.resolve(parseRpcPayload(codeRequestSchema, payload).code));
  }

  @MessagePattern(RpcPatterns.getLink)
  details(@Payload() payload: unknown): Promise<RpcResult<LinkDetails>> {
    return this.run(() => this.reader.details(parseRpcPayload(codeRequestSchema, payload).code));
  }

  @MessagePattern(RpcPatterns.listLinks)
  listLinks(@Payload() payload: unknown): Promise<RpcResult<LinkPage>> {
    return this.run(() => this.catalog.listLinks(parseRpcPayload(listLinksRequestSchema, payload)));
  }

  @MessagePattern(RpcPatterns.getKey)
  key(@Payload() payload: unknown): Promise<RpcResult<ApiKeyCredential>> {
    return this.run(() => this.catalog.credential(parseRpcPayload(keyIdRequestSchema, payload).id));
  }

  @MessagePattern(RpcPatterns.listKeys)
  keys(@Payload() payload: unknown): Promise<RpcResult<ApiKeyInfo[]>> {
    return this.run(() => {
      parseRpcPayload(listKeysRequestSchema, payload);
      return this.catalog.listKeys();
    });
  }

  @MessagePattern(RpcPatterns.nodeHealth)
  nodeHealth(@Payload() payload: unknown): Promise<RpcResult<NodeHealth[]>> {
    return this.run(async () => {
      parseRpcPayload(nodeHealthRequestSchema, payload);
      return this.health.report();
    });
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
